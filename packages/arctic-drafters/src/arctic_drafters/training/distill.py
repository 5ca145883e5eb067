"""Stage 2 at scale: distillation with the frozen target inside the loop, on any number of
processes (torchrun + DDP), with gradient accumulation and resume across world sizes.

Recipe of ArcticTraining / arXiv 2404.19124 (as ``trainer.train_drafter``): head i reads the
target's state at t and the token at t+1+i and is trained with cross-entropy against the
target's token at t+2+i, plus optionally a KL term to the target's distribution there. The
target's states are computed per micro-batch under ``no_grad`` (``hidden.TargetStates``) and
dropped after it, so peak memory is set by the micro-batch, never by the dataset.

What defines the result: the ``DistillConfig`` (global batch of sequences, seed, ...) and
the data. Step s trains on sequences ``s * B ... (s+1) * B - 1`` of a seeded stream of
per-epoch permutations (a pure function of the seed and the step); each of W processes takes
a contiguous B / W of them, in micro-batches of ``micro_batch_sequences``. The loss is
normalised by the global batch's position count (known from the lengths alone), so 1
process or W, with or without accumulation, computes the same gradient up to float
summation order (tested: ``torchrun --nproc-per-node 2`` against 1 process). A checkpoint
holds the drafter, AdamW and the schedule, nothing per-process, so it resumes under any
world size whose micro-batches divide the batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..exceptions import DatasetError, IncompatibleTargetError
from ..speculator import Speculator
from .distributed import Runtime, wrap_drafter
from .positions import count_points, gather_points, select_points
from .run_log import RunLog
from .shards import SequenceStore
from .trainer import (
    _find_checkpoint,
    _save_checkpoint,
    build_optimizer,
    check_schedule,
    resume_checkpoint,
)


class StateSource(Protocol):
    """Final-norm states of a batch: the target in the loop (``TargetStates``)."""

    hidden_size: int
    lm_head: torch.Tensor

    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class DistillConfig:
    steps: int = 3000  # optimizer steps
    batch_sequences: int = 32  # global batch: sequences per optimizer step, all processes
    lr: float = 1e-3  # AdamW, as in ArcticTraining
    weight_decay: float = 0.1
    warmup_frac: float = 0.05  # linear warmup, then cosine to zero
    grad_clip: float = 1.0
    kl_weight: float = 0.0  # > 0 adds KL(target || drafter) per head
    seed: int = 0  # the data order (the drafter's init is the caller's)

    def __post_init__(self) -> None:
        check_schedule(self, ("steps", "batch_sequences"))


class SequenceOrder:
    """The seeded stream of sequence indices: epoch e is a permutation drawn from
    (seed, e); step s takes stream positions s*B .. s*B+B-1."""

    def __init__(self, num_sequences: int, seed: int) -> None:
        self.n, self.seed = num_sequences, seed
        self._epochs: dict[int, torch.Tensor] = {}

    def _epoch(self, e: int) -> torch.Tensor:
        if e not in self._epochs:
            if len(self._epochs) > 2:
                self._epochs.pop(min(self._epochs))
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            self._epochs[e] = torch.randperm(self.n, generator=g)
        return self._epochs[e]

    def step(self, step: int, batch: int) -> torch.Tensor:
        stream = torch.arange(step * batch, (step + 1) * batch)
        return torch.stack([self._epoch(int(p) // self.n)[int(p) % self.n] for p in stream])


def split_batch(config: DistillConfig, runtime: Runtime, micro: int | None) -> tuple[int, int]:
    """(sequences per process per step, micro-batch size), checked."""
    if config.batch_sequences % runtime.world_size:
        raise ValueError(
            f"batch_sequences {config.batch_sequences} is not divisible by the "
            f"{runtime.world_size} processes"
        )
    per_rank = config.batch_sequences // runtime.world_size
    micro = per_rank if micro is None else micro
    if micro <= 0 or per_rank % micro:
        raise ValueError(
            f"micro_batch_sequences {micro} must divide the {per_rank} sequences per process "
            f"(batch_sequences {config.batch_sequences} / {runtime.world_size} processes)"
        )
    return per_rank, micro


def _check_data(drafter: Speculator, store: SequenceStore, states: StateSource) -> None:
    c = drafter.config
    if store.vocab_size != c.vocab_size:
        raise IncompatibleTargetError(
            f"the shards come from a target with vocab_size {store.vocab_size}, the drafter "
            f"has {c.vocab_size}"
        )
    if states.hidden_size != c.hidden_size:
        raise IncompatibleTargetError(
            f"the target has hidden size {states.hidden_size}, the drafter expects "
            f"hidden_size {c.hidden_size}"
        )
    if count_points(store.lengths, store.prompt_lens, c.n_predict, draft=False) == 0:
        raise DatasetError(
            f"no sequence has a continuation long enough to train {c.n_predict} heads; "
            "generate longer ones"
        )


def _micro_step(
    model: torch.nn.Module,
    store: SequenceStore,
    states: StateSource,
    indices: torch.Tensor,
    n: int,
    kl_weight: float,
    runtime: Runtime,
    scale: float,
) -> torch.Tensor:
    """Forward + backward of one micro-batch; returns [CE sum per head, correct per head]."""
    batch = store.batch(indices)
    tokens = batch.tokens.to(runtime.device)
    with runtime.autocast():
        hidden = states(tokens, batch.attention_mask.to(runtime.device))  # (B, T, H)
    rows, t = select_points(batch, n, draft=False)
    points = gather_points(tokens, hidden, rows, t, n, with_next_states=kl_weight > 0)
    with runtime.autocast():
        logits = model(points.hidden.float(), points.inputs)  # (n, N, V)
    logits = logits.float()
    ce = F.cross_entropy(logits.flatten(0, 1), points.targets.T.flatten(), reduction="none").view(
        n, len(rows)
    )
    loss = ce.sum()
    if kl_weight > 0:
        assert points.next_states is not None
        with torch.no_grad():
            target_logits = points.next_states.float() @ states.lm_head.float().T  # (N, n, V)
            target_logp = torch.log_softmax(target_logits, -1).transpose(0, 1)
        kl = F.kl_div(torch.log_softmax(logits, -1), target_logp, log_target=True, reduction="sum")
        loss = loss + kl_weight * kl
    (loss * scale).backward()  # type: ignore[no-untyped-call]
    with torch.no_grad():
        correct = (logits.argmax(-1) == points.targets.T).sum(1).float()
    return torch.cat([ce.detach().sum(1), correct])


def train_online(
    drafter: Speculator,
    store: SequenceStore,
    states: StateSource,
    out_dir: str | os.PathLike[str],
    config: DistillConfig,
    runtime: Runtime,
    *,
    micro_batch_sequences: int | None = None,
    checkpoint_every: int = 100,
    resume: bool = True,
    stop_after_steps: int | None = None,
    log: RunLog | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``drafter`` in place (every process calls this with the same arguments);
    returns a report. With ``resume`` a checkpoint in ``out_dir`` of the same drafter and
    config is continued, whatever world size wrote it. ``stop_after_steps``: return after
    that many steps of this call, checkpointed (for time-limited jobs; rerun to go on)."""
    _check_data(drafter, store, states)
    per_rank, micro = split_batch(config, runtime, micro_batch_sequences)
    if checkpoint_every <= 0:
        raise ValueError(f"checkpoint_every must be positive, got {checkpoint_every}")
    out = Path(out_dir)
    n = drafter.config.n_predict
    drafter.float()
    model = wrap_drafter(drafter, runtime)
    optimizer, scheduler = build_optimizer(drafter, config)
    start = 0
    found = _find_checkpoint(out) if resume else None
    if found is not None:
        expected = {"distill_config": asdict(config), "drafter_config": drafter.config.to_dict()}
        saved = resume_checkpoint(found, drafter, optimizer, scheduler, expected, runtime.device)
        start = int(saved["step"])
    end = config.steps if stop_after_steps is None else min(config.steps, start + stop_after_steps)
    order = SequenceOrder(len(store), config.seed)
    drafter.train()
    began, positions_done = time.perf_counter(), 0
    bar = tqdm(
        range(start, end),
        desc="train",
        initial=start,
        total=config.steps,
        disable=not (progress and runtime.is_main),
    )
    last: dict[str, Any] = {}
    for step in bar:
        step_began = time.perf_counter()
        indices = order.step(step, config.batch_sequences)
        total = count_points(store.lengths[indices], store.prompt_lens[indices], n, draft=False)
        scale = runtime.world_size / max(total, 1)  # DDP averages over processes
        mine = indices[runtime.rank * per_rank : (runtime.rank + 1) * per_rank]
        sums = torch.zeros(2 * n, device=runtime.device)
        chunks = torch.split(mine, micro)
        for j, chunk in enumerate(chunks):
            sync = j == len(chunks) - 1 or not runtime.distributed
            ctx = contextlib.nullcontext() if sync else model.no_sync()  # type: ignore[operator]
            with ctx:
                sums += _micro_step(
                    model, store, states, chunk, n, config.kl_weight, runtime, scale
                )
        torch.nn.utils.clip_grad_norm_(drafter.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        runtime.all_reduce_sum(sums)
        denom = max(total, 1)
        seconds = time.perf_counter() - step_began
        positions_done += total
        done = step + 1
        last = {
            "step": done,
            "loss": float(sums[:n].sum()) / denom,  # sum over heads of the mean CE
            "head_loss": [float(x) / denom for x in sums[:n]],
            "head_accuracy": [float(x) / denom for x in sums[n:]],
            "lr": scheduler.get_last_lr()[0],
            "positions": total,
            "positions_per_s": total / seconds if seconds > 0 else 0.0,
        }
        if log is not None and runtime.is_main:
            log.write(last)
        bar.set_postfix(
            loss=f"{last['loss']:.3f}", acc="/".join(f"{a:.2f}" for a in last["head_accuracy"])
        )
        if done % checkpoint_every == 0 or done == end:
            if runtime.is_main:
                _save_checkpoint(
                    out,
                    drafter,
                    {
                        "step": done,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "drafter_config": drafter.config.to_dict(),
                        "distill_config": asdict(config),
                    },
                )
            runtime.barrier()
        if on_step is not None:
            on_step(done)
    bar.close()
    drafter.eval()
    elapsed = time.perf_counter() - began
    report = {
        "steps": config.steps,
        "steps_done": end,
        "resumed_from": start,
        "seconds": round(elapsed, 2),
        "positions_per_s": positions_done / elapsed if elapsed > 0 else 0.0,
        "last": last,
        "world_size": runtime.world_size,
        "micro_batch_sequences": micro,
        "precision": "fp32" if runtime.autocast_dtype is None else "bf16",
        "device": runtime.device.type,
        "distill_config": asdict(config),
    }
    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
