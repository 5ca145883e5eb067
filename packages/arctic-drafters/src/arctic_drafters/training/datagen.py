"""Stage 1: the target's own continuations of the user's prompts, as token shards.

As in ArcticTraining, the labels are what the *target* writes after real prompts, not the
dataset's text: a drafter is judged on agreeing with the target, so it is trained on it.

Two engines write the same shards: vLLM's offline ``LLM`` (arctic-vllm's ``datagen_engine.VllmEngine``, the
fast one: tensor parallel inside, data parallel by shard) and transformers' ``generate``
(``TransformersEngine``, the fallback where vLLM is absent; ``generate_shards`` also takes a
transformers model directly). Greedy output is the same token for token (tested).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from ..exceptions import DatasetError
from .shards import (
    FORMAT,
    FORMAT_VERSION,
    TokenShards,
    fingerprint,
    read_shards,
    shard_name,
    write_manifest,
    write_shard,
)
from .target import max_positions

__all__ = [
    "GenerationEngine",
    "TokenShards",
    "TransformersEngine",
    "generate_shards",
    "read_shards",
]


def request_seed(seed: int, index: int) -> int:
    """The seed of prompt ``index``'s sample: a function of the prompt alone, so output does
    not depend on batching, shard size, resuming or how many workers share the work."""
    return (seed * 1_000_003 + index) % (2**63 - 1)


class GenerationEngine(Protocol):
    name: str
    vocab_size: int
    max_positions: int | None

    def generate(
        self,
        prompts: Sequence[list[int]],
        first_index: int,
        gen_len: int,
        temperature: float,
        top_k: int,
        seed: int,
        stop_at_eos: bool,
    ) -> list[list[int]]:
        """The continuation of each prompt (prompt ``i`` is number ``first_index + i``)."""
        ...


def _eos_ids(model: Any) -> set[int]:
    config = getattr(model, "generation_config", None) or model.config
    eos = getattr(config, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


class TransformersEngine:
    """``model.generate`` in batches of prompts of equal length (no padding, so a batch's
    greedy output is each prompt's own). Sampled output is seeded per call (the shard), not
    per prompt as vLLM's is: reproducible, but not the same draws as vLLM's."""

    name = "transformers"

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model, self.batch_size = model, batch_size
        self.vocab_size = int(model.config.vocab_size)
        self.max_positions = max_positions(model)
        self.eos = _eos_ids(model)

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[list[int]],
        first_index: int,
        gen_len: int,
        temperature: float,
        top_k: int,
        seed: int,
        stop_at_eos: bool,
    ) -> list[list[int]]:
        torch.manual_seed(request_seed(seed, first_index) % 2**62)
        device = next(self.model.parameters()).device
        out: list[list[int]] = [[] for _ in prompts]
        order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
        groups: list[list[int]] = []
        for i in order:
            if (
                groups
                and len(prompts[groups[-1][0]]) == len(prompts[i])
                and len(groups[-1]) < self.batch_size
            ):
                groups[-1].append(i)
            else:
                groups.append([i])
        for group in groups:
            ids = torch.tensor([prompts[i] for i in group], dtype=torch.long, device=device)
            seqs = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=gen_len,
                min_new_tokens=None if stop_at_eos else gen_len,  # equal lengths: static shapes
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_k=(top_k or None) if temperature > 0 else None,
                top_p=None,
                pad_token_id=self.model.config.pad_token_id or 0,
            )
            for row, i in enumerate(group):
                tokens = seqs[row, ids.shape[1] :].tolist()
                if stop_at_eos:
                    cut = next((j for j, t in enumerate(tokens) if t in self.eos), None)
                    tokens = tokens if cut is None else tokens[: cut + 1]  # the EOS is kept
                out[i] = tokens
        return out


def _check_arguments(gen_len: int, shard_size: int, temperature: float, top_k: int) -> None:
    for name, value in (("gen_len", gen_len), ("shard_size", shard_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0: no top-k filtering), got {top_k!r}")
    if (
        not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")


def generation_manifest(
    engine: GenerationEngine,
    prompts: list[list[int]],
    gen_len: int,
    shard_size: int,
    temperature: float,
    top_k: int,
    seed: int,
    stop_at_eos: bool,
) -> dict[str, Any]:
    """The manifest a run with these settings writes (checked before anything is)."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise DatasetError("no prompts to generate from (or an empty one)")
    longest = max(len(p) for p in prompts)
    limit = engine.max_positions
    if limit is not None and longest + gen_len > limit:
        raise DatasetError(
            f"prompt length {longest} + gen_len {gen_len} > the target's "
            f"max_position_embeddings {limit}; shorten them"
        )
    lengths = {len(p) for p in prompts}
    settings = {
        "engine": engine.name,
        "gen_len": gen_len,
        "shard_size": shard_size,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
        "stop_at_eos": stop_at_eos,
        "vocab_size": engine.vocab_size,
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **settings,
        "prompt_len": lengths.pop() if len(lengths) == 1 else None,  # None: chat prompts
        "num_sequences": len(prompts),
        "num_shards": (len(prompts) + shard_size - 1) // shard_size,
        "fingerprint": fingerprint(prompts, settings),
    }


def generate_shards(
    model: Any,
    prompts: list[list[int]],
    out_dir: str | os.PathLike[str],
    gen_len: int,
    batch_size: int = 32,
    shard_size: int = 512,
    temperature: float = 1.0,
    top_k: int = 10,
    seed: int = 0,
    *,
    stop_at_eos: bool = False,
    worker_index: int = 0,
    num_workers: int = 1,
    on_shard: Callable[[int], None] | None = None,
    progress: bool = True,
) -> Path:
    """Write the ``shard-NNNNN.safetensors`` files of prompt + continuation tokens.

    ``model``: a ``GenerationEngine`` (``VllmEngine``, ``TransformersEngine``) or a
    transformers causal LM (run by a ``TransformersEngine`` of ``batch_size``).
    ``temperature=0`` is greedy (what evaluation compares against), ``top_k=0`` samples
    without top-k filtering. Without ``stop_at_eos`` every continuation is ``gen_len``
    tokens (EOS ignored, as for chunked prompts); with it an answer ends at its EOS (chat).

    Resumable: shards already written are kept and the missing ones written, the same as
    an uninterrupted run's (seeds are per prompt or per shard, never per run). A rerun with
    other prompts or settings is refused. Worker ``worker_index`` of ``num_workers`` writes
    the shards ``s`` with ``s % num_workers == worker_index`` (data parallel: one engine per
    worker). Arguments are checked before anything is written. ``on_shard(s)`` is called
    after shard ``s`` is written.
    """
    _check_arguments(gen_len, shard_size, temperature, top_k)
    if not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in 0..{num_workers - 1}, got {worker_index}")
    engine: GenerationEngine = (
        TransformersEngine(model, batch_size) if isinstance(model, torch.nn.Module) else model
    )
    manifest = generation_manifest(
        engine, prompts, gen_len, shard_size, temperature, top_k, seed, stop_at_eos
    )
    out = Path(out_dir)
    write_manifest(out, manifest)
    mine = [s for s in range(manifest["num_shards"]) if s % num_workers == worker_index]
    todo = [s for s in mine if not (out / shard_name(s)).is_file()]
    total = sum(len(prompts[s * shard_size : (s + 1) * shard_size]) for s in mine)
    bar = tqdm(
        total=total,
        initial=total - sum(len(prompts[s * shard_size : (s + 1) * shard_size]) for s in todo),
        desc=f"generate ({engine.name})" + (f" {worker_index}" if num_workers > 1 else ""),
        unit="seq",
        disable=not progress,
        position=worker_index,
    )
    for s in todo:
        first = s * shard_size
        chunk = prompts[first : first + shard_size]
        continuations = engine.generate(
            chunk, first, gen_len, temperature, top_k, seed, stop_at_eos
        )
        write_shard(out / shard_name(s), chunk, continuations)
        bar.update(len(chunk))
        if on_shard is not None:
            on_shard(s)
    bar.close()
    return out
