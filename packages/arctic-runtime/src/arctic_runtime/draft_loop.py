"""`DraftLoop`: a drafter's whole n-step greedy loop on static buffers, one CUDA graph per
padded batch size; on the CPU, one compiled kernel program for every batch size.

A draft step is n tiny kernels per head (embedding, projection, norm, head, argmax); at
serving batch sizes their launch overhead, not their FLOPs, sets the drafter's latency. So,
as vLLM does for its model runner, the loop reads and writes fixed buffers and each padded
batch size is captured once as a ``torch.cuda.CUDAGraph`` and replayed afterwards.

The CPU has the same problem in another form: each of the ~60 small ops of a draft costs
5-20 us of dispatch and threading overhead, several times its arithmetic. There the loop
can be compiled (``compile=True``: ``torch.compile(fullgraph=True, dynamic=True)``), which
fuses every elementwise op between two matmuls into one generated C++ kernel. Measured on
the tiny LSTM drafter here (2 threads, batch 1): 1.13 ms eager, 0.62 ms compiled. Batch 1
and one size-generic program for batches >= 2 are compiled at `capture()`, which runs every
padded size once (6-25 s at start-up, less with inductor's warm on-disk cache), so that
no serving step compiles.
Otherwise the loop runs eagerly.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch

from arctic_drafters import Speculator

DraftMode = Literal["cuda_graph", "compiled", "eager"]

logger = logging.getLogger("arctic_runtime")


def default_batch_sizes(max_batch_size: int) -> list[int]:
    """1, 2, 4, 8, then multiples of 8 up to ``max_batch_size`` (always included)."""
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int):
        raise TypeError(f"max_batch_size must be an int, got {max_batch_size!r}")
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    sizes = [s for s in (1, 2, 4) if s < max_batch_size]
    sizes += list(range(8, max_batch_size, 8))
    return [*sizes, max_batch_size]


def _speculator_dtype(speculator: Speculator) -> torch.dtype:
    # FP8-quantized heads are buffers, not parameters; the embeddings and projections keep
    # the drafter's activation dtype.
    for p in speculator.parameters():
        if p.is_floating_point():
            return p.dtype
    raise ValueError(f"{type(speculator).__name__} has no floating-point parameters")


def _speculator_device(speculator: Speculator) -> torch.device:
    for t in (*speculator.parameters(), *speculator.buffers()):
        return t.device
    raise ValueError(f"{type(speculator).__name__} has no parameters or buffers")


class DraftLoop:
    """Runs ``speculator``'s greedy draft of ``num_tokens`` tokens for up to
    ``max_batch_size`` requests at a time.

    ``batch_sizes``: the padded sizes a batch is rounded up to (default
    `default_batch_sizes`); ``max_batch_size`` is added when missing, so every batch up to it
    has a size. ``use_cuda_graph``: default True exactly when the speculator is on CUDA
    (and ``compile`` is off).
    ``compile``: run the loop through ``torch.compile`` (off CUDA graphs; compiled at
    `capture()`, or on first use). If compilation fails (no C++ compiler, say) the loop
    logs why and runs eagerly: drafts are the same, only slower.
    """

    def __init__(
        self,
        speculator: Speculator,
        num_tokens: int,
        max_batch_size: int = 64,
        batch_sizes: Sequence[int] | None = None,
        use_cuda_graph: bool | None = None,
        compile: bool = False,
    ) -> None:
        n_predict = speculator.config.n_predict
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int):
            raise TypeError(f"num_tokens must be an int, got {num_tokens!r}")
        if not 1 <= num_tokens <= n_predict:
            raise ValueError(
                f"num_tokens must be in 1..{n_predict} (the speculator's n_predict), "
                f"got {num_tokens}"
            )
        sizes = default_batch_sizes(max_batch_size)
        if batch_sizes is not None:
            bad = [s for s in batch_sizes if not isinstance(s, int) or not 1 <= s <= max_batch_size]
            if bad:
                raise ValueError(
                    f"batch_sizes must be ints in 1..max_batch_size={max_batch_size}, got {bad}"
                )
            sizes = sorted({*batch_sizes, max_batch_size})
        if use_cuda_graph and compile:
            raise ValueError(
                "use_cuda_graph=True and compile=True exclude each other: a captured graph "
                "already removes the launch overhead that compilation would"
            )
        device = _speculator_device(speculator)
        if use_cuda_graph is None:
            use_cuda_graph = device.type == "cuda" and not compile
        if use_cuda_graph and device.type != "cuda":
            raise ValueError(
                f"use_cuda_graph=True needs the speculator on a CUDA device, it is on {device}"
            )
        if use_cuda_graph:
            # The finiteness check of FP8 activations reads a flag back to the host, which a
            # CUDA graph capture forbids.
            checking = [
                name
                for name, m in speculator.named_modules()
                if getattr(m, "check_finite", False) is True
            ]
            if checking:
                raise ValueError(
                    f"modules {checking} have check_finite=True (a host sync, not allowed in "
                    "a CUDA graph); set `module.check_finite = False` on them, or pass "
                    "use_cuda_graph=False"
                )

        self.speculator = speculator
        self.num_tokens = num_tokens
        self.max_batch_size = max_batch_size
        self.batch_sizes: tuple[int, ...] = tuple(sizes)
        self.hidden_size = speculator.config.hidden_size
        self._mode: DraftMode = (
            "cuda_graph" if use_cuda_graph else "compiled" if compile else "eager"
        )
        # Compiled mode: batch sizes >= 2 share one size-generic program (dynamic shapes);
        # torch specializes size 1, which gets its own, and a branch on the batch size (such
        # as arctic-kernels' Int8Linear kernel_max_rows) one per side: so every padded size is
        # run once at capture(), and any recompilation happens then.
        self._compiled: Any = None
        self._compiled_sizes: set[int] = set()
        dtype = _speculator_dtype(speculator)
        self._hidden = torch.zeros(max_batch_size, self.hidden_size, dtype=dtype, device=device)
        self._tokens = torch.zeros(max_batch_size, dtype=torch.long, device=device)
        self._out = torch.zeros(max_batch_size, num_tokens, dtype=torch.long, device=device)
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        # One memory pool shared by all sizes' graphs (torch types its handle privately).
        self._pool: Any = None

    @property
    def mode(self) -> DraftMode:
        """How `run` drafts: "cuda_graph" (replays captured graphs) or "eager"."""
        return self._mode

    @property
    def device(self) -> torch.device:
        return self._hidden.device

    @property
    def dtype(self) -> torch.dtype:
        return self._hidden.dtype

    @property
    def captured_sizes(self) -> tuple[int, ...]:
        """The padded batch sizes captured (CUDA graphs) or compiled for, so far, ascending."""
        return tuple(sorted(self._graphs or self._compiled_sizes))

    def graph(self, padded_size: int) -> torch.cuda.CUDAGraph | None:
        """The graph captured for ``padded_size``, or None."""
        return self._graphs.get(padded_size)

    def padded_size(self, batch_size: int) -> int:
        """The smallest configured batch size >= ``batch_size``."""
        if not 1 <= batch_size <= self.max_batch_size:
            raise ValueError(
                f"batch size must be in 1..max_batch_size={self.max_batch_size}, got {batch_size}"
            )
        return self.batch_sizes[bisect.bisect_left(self.batch_sizes, batch_size)]

    def draft(self, hidden_states: torch.Tensor, last_tokens: torch.Tensor) -> torch.Tensor:
        """The loop body: (P, H) states and (P,) tokens -> (P, num_tokens) greedy tokens.

        No validation and no host syncs, so it traces under
        ``torch.compile(fullgraph=True)`` and captures as one CUDA graph; it equals
        ``speculator.propose(hidden_states, last_tokens, num_tokens)``.
        """
        state, cell = self.speculator.initial_state(hidden_states)
        tokens = last_tokens
        out = []
        for i in range(self.num_tokens):
            state, cell = self.speculator.step(i, state, cell, tokens)
            tokens = self.speculator.head_logits(i, state).argmax(-1)  # (P,)
            out.append(tokens)
        return torch.stack(out, 1)

    def _draft_into_buffers(self, padded: int) -> None:
        draft = self.draft if self._mode != "compiled" else self._compiled_draft(padded)
        self._out[:padded].copy_(draft(self._hidden[:padded], self._tokens[:padded]))

    def _compiled_draft(self, padded: int) -> Any:
        if self._compiled is None:
            self._compiled = torch.compile(self.draft, fullgraph=True, dynamic=True)
        if padded not in self._compiled_sizes:
            # A size's first call compiles a program if none of the existing ones fits it
            # (seconds); after a failure the loop stays eager for good.
            try:
                self._compiled(self._hidden[:padded], self._tokens[:padded])
            except Exception as exc:  # inductor raises many types (no compiler, ...)
                logger.warning(
                    "arctic_runtime: compiling the draft loop failed (%s: %s); it runs "
                    "eagerly (same drafts, slower)",
                    type(exc).__name__,
                    exc,
                )
                self._mode = "eager"
                self._compiled = None
                return self.draft
            self._compiled_sizes.add(padded)
        return self._compiled

    @torch.inference_mode()  # as vLLM's model runner: a compiled program guards on the mode
    def capture(self, batch_sizes: Sequence[int] | None = None) -> None:
        """Capture the graphs (CUDA) or compile the programs (``compile=True``) of
        ``batch_sizes`` (default: all) now rather than on first use."""
        if self._mode == "eager":
            raise RuntimeError(
                "capture() needs use_cuda_graph=True or compile=True (the loop runs eagerly)"
            )
        sizes = self.batch_sizes if batch_sizes is None else batch_sizes
        unknown = [s for s in sizes if s not in self.batch_sizes]
        if unknown:
            raise ValueError(f"batch sizes {unknown} are not among {list(self.batch_sizes)}")
        if self._mode == "compiled":
            for size in sorted(set(sizes)):
                if size not in self._compiled_sizes:
                    self._hidden[:size].zero_()
                    self._tokens[:size].zero_()
                    self._compiled_draft(size)
            return
        # Largest first: later, smaller graphs then fit in the memory pool the first made.
        for size in sorted(set(sizes), reverse=True):
            self._capture(size)

    def _capture(self, padded: int) -> torch.cuda.CUDAGraph:
        graph = self._graphs.get(padded)
        if graph is not None:
            return graph
        # As torch.cuda.graphs' docs require: warm up on a side stream (lazy inits, cuBLAS
        # workspaces, autotuning) so none of it lands in the capture.
        side = torch.cuda.Stream(device=self.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._draft_into_buffers(padded)
        torch.cuda.current_stream(self.device).wait_stream(side)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            self._draft_into_buffers(padded)
        self._graphs[padded] = graph
        return graph

    def _check_inputs(self, hidden_states: torch.Tensor, last_tokens: torch.Tensor) -> int:
        if hidden_states.dim() != 2 or hidden_states.shape[1] != self.hidden_size:
            raise ValueError(
                f"hidden_states must be (B, {self.hidden_size}), got {tuple(hidden_states.shape)}"
            )
        batch = hidden_states.shape[0]
        if last_tokens.shape != (batch,):
            raise ValueError(
                f"last_tokens must be ({batch},) to match hidden_states, got "
                f"{tuple(last_tokens.shape)}"
            )
        if last_tokens.is_floating_point() or last_tokens.is_complex():
            raise TypeError(f"last_tokens must hold integer ids, got {last_tokens.dtype}")
        if batch > self.max_batch_size:
            raise ValueError(
                f"batch of {batch} exceeds max_batch_size={self.max_batch_size}; make a "
                "DraftLoop with a larger max_batch_size or split the batch"
            )
        if batch == 0:
            raise ValueError("hidden_states holds no rows; a draft needs a batch of >= 1")
        return batch

    @torch.inference_mode()  # as vLLM's model runner: a compiled program guards on the mode
    def run(self, hidden_states: torch.Tensor, last_tokens: torch.Tensor) -> torch.Tensor:
        """(B, H) final-norm target states and (B,) last tokens -> (B, num_tokens) tokens.

        The result is a new tensor on the loop's device: the output buffer is overwritten
        by the next call.
        """
        batch = self._check_inputs(hidden_states, last_tokens)
        padded = self.padded_size(batch)
        self._hidden[:batch].copy_(hidden_states)
        self._tokens[:batch].copy_(last_tokens)
        if padded > batch:
            # Stale rows from an earlier, larger batch would be harmless for row-wise heads
            # but not for per-tensor FP8 activation scales; zeros never raise an amax.
            self._hidden[batch:padded].zero_()
            self._tokens[batch:padded].zero_()
        if self._mode == "cuda_graph":
            self._capture(padded).replay()
        else:
            self._draft_into_buffers(padded)
        return self._out[:batch].clone()

    def __call__(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int
    ) -> torch.Tensor:
        """``speculator.propose``'s signature, so a loop can stand in for it (a
        `DrafterProposer` draft runner): the first ``n`` of the ``num_tokens`` drafted.
        A greedy draft's first n tokens do not depend on how many follow."""
        if not 1 <= n <= self.num_tokens:
            raise ValueError(f"n must be in 1..{self.num_tokens} (this loop's num_tokens), got {n}")
        return self.run(hidden_states, last_tokens)[:, :n]
