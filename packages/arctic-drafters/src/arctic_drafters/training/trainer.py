"""Stage 2: teacher-forced distillation of a drafter, with checkpoint and resume.

Recipe of ArcticTraining / arXiv 2404.19124: head i reads the target's state at position t
and the token at t+1+i, and is trained with cross-entropy against the target's token at
t+2+i; optionally a KL term to the target's full distribution at that position (computed
from the cached final-norm state and the target's LM head, so the target need not be loaded).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpoint import load_drafter, save_drafter
from ..exceptions import DatasetError, IncompatibleTargetError, TrainingStateError
from ..speculator import Speculator
from .hidden import HiddenStates
from .shards import TokenShards

CHECKPOINT_DIR = "checkpoint"
STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 3000  # optimizer steps (the anchor's ~3000)
    batch_positions: int = 1024  # (sequence, position) pairs per step
    lr: float = 1e-3  # AdamW, as in ArcticTraining
    weight_decay: float = 0.1
    warmup_frac: float = 0.05  # linear warmup, then cosine to zero
    grad_clip: float = 1.0
    kl_weight: float = 0.0  # > 0 adds KL(target || drafter) per head
    checkpoint_every: int = 100  # a crash loses at most this many steps
    seed: int = 0

    def __post_init__(self) -> None:
        check_schedule(self, ("steps", "batch_positions", "checkpoint_every"))


class Schedule(Protocol):
    """What the optimizer, its schedule and their checks read (TrainConfig,
    distill.DistillConfig)."""

    @property
    def steps(self) -> int: ...

    @property
    def warmup_frac(self) -> float: ...

    @property
    def lr(self) -> float: ...

    @property
    def weight_decay(self) -> float: ...


def check_schedule(config: Schedule, positive_ints: tuple[str, ...]) -> None:
    """ValueError naming the first bad field of a training config: ``positive_ints`` (its
    step and batch counts), the warmup fraction, lr / grad_clip, weight_decay / kl_weight."""
    for name in positive_ints:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not 0.0 <= config.warmup_frac < 1.0:
        raise ValueError(f"warmup_frac must be in [0, 1), got {config.warmup_frac!r}")
    for name in ("lr", "grad_clip"):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    for name in ("weight_decay", "kl_weight"):
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)!r}")


def _lr_factor(step: int, config: Schedule) -> float:
    warmup = max(1, round(config.warmup_frac * config.steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_optimizer(
    drafter: Speculator, config: Schedule
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on norms and biases) with linear warmup, then cosine to zero."""
    decay = [p for p in drafter.parameters() if p.dim() >= 2]
    no_decay = [p for p in drafter.parameters() if p.dim() < 2]  # norms: no weight decay
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, config))
    return optimizer, scheduler


def resume_checkpoint(
    found: Path,
    drafter: Speculator,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    expected: dict[str, Any],
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load the checkpoint at ``found`` into drafter, optimizer and scheduler; returns its
    saved state. Refuses (before loading anything) one whose recorded configs differ from
    ``expected`` (key in the state -> the value this run has)."""
    saved: dict[str, Any] = torch.load(found / STATE_FILE, weights_only=True, map_location=device)
    if any(saved.get(key) != value for key, value in expected.items()):
        raise TrainingStateError(
            f"{found} was written by another run (drafter or training config differs); "
            "use another out_dir or resume=False"
        )
    drafter.load_state_dict(load_drafter(found, device=device).state_dict())
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return saved


def position_range(seq_len: int, prompt_len: int, n_predict: int) -> tuple[int, int]:
    """First and last position t whose targets t+2 .. t+1+n all lie in the continuation."""
    return max(prompt_len - 2, 0), seq_len - n_predict - 2


def validate_training_data(drafter: Speculator, shards: TokenShards, states: HiddenStates) -> None:
    c = drafter.config
    if shards.vocab_size != c.vocab_size:
        raise IncompatibleTargetError(
            f"the shards come from a target with vocab_size {shards.vocab_size}, the drafter "
            f"has {c.vocab_size}"
        )
    if states.hidden.shape[-1] != c.hidden_size:
        raise IncompatibleTargetError(
            f"hidden states have size {states.hidden.shape[-1]}, the drafter expects "
            f"hidden_size {c.hidden_size}"
        )
    if tuple(states.hidden.shape[:2]) != tuple(shards.tokens.shape):
        raise DatasetError(
            f"hidden states {tuple(states.hidden.shape[:2])} do not match the token shards "
            f"{tuple(shards.tokens.shape)}; recompute the cache"
        )
    lo, hi = position_range(shards.tokens.shape[1], shards.prompt_len, c.n_predict)
    if hi < lo:
        raise DatasetError(
            f"continuations of {shards.tokens.shape[1] - shards.prompt_len} tokens are too short "
            f"to train {c.n_predict} heads; generate longer ones"
        )


def sample_batch(
    shards: TokenShards, states: HiddenStates, n: int, size: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(hidden (B, H), input tokens (B, n), target tokens (B, n), next states (B, n, H))."""
    lo, hi = position_range(shards.tokens.shape[1], shards.prompt_len, n)
    per_seq = hi - lo + 1
    flat = torch.randint(shards.tokens.shape[0] * per_seq, (size,), generator=gen)
    seq, t = flat // per_seq, lo + flat % per_seq
    offsets = t[:, None] + 1 + torch.arange(n)  # (B, n): positions t+1 .. t+n
    hidden = states.hidden[seq, t].float()
    inputs = shards.tokens[seq[:, None], offsets]
    targets = shards.tokens[seq[:, None], offsets + 1]
    next_states = states.hidden[seq[:, None], offsets]  # the target's state that predicts targets
    return hidden, inputs, targets, next_states


def _save_checkpoint(out: Path, drafter: Speculator, state: dict[str, Any]) -> None:
    # Written to a temp dir, then swapped in: a crash at any point leaves one whole checkpoint.
    final, tmp, old = (
        out / CHECKPOINT_DIR,
        out / (CHECKPOINT_DIR + ".tmp"),
        out / (CHECKPOINT_DIR + ".old"),
    )
    shutil.rmtree(tmp, ignore_errors=True)
    save_drafter(drafter, tmp)
    torch.save(state, tmp / STATE_FILE)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _find_checkpoint(out: Path) -> Path | None:
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old"):
        if (out / name / STATE_FILE).is_file():
            return out / name
    return None


def train_drafter(
    drafter: Speculator,
    shards: TokenShards,
    states: HiddenStates,
    out_dir: str | os.PathLike[str],
    config: TrainConfig,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``drafter`` in place; returns a report. With ``resume`` a checkpoint in
    ``out_dir`` (same drafter config and TrainConfig) is continued, bit for bit."""
    validate_training_data(drafter, shards, states)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = drafter.config.n_predict
    optimizer, scheduler = build_optimizer(drafter, config)
    gen = torch.Generator().manual_seed(config.seed)
    start, ema_loss, ema_acc = 0, None, [0.0] * n
    found = _find_checkpoint(out) if resume else None
    if found is not None:
        expected = {"drafter_config": drafter.config.to_dict(), "train_config": asdict(config)}
        saved = resume_checkpoint(found, drafter, optimizer, scheduler, expected)
        gen.set_state(saved["generator"])
        start, ema_loss, ema_acc = saved["step"], saved["ema_loss"], saved["ema_acc"]
    lm_head = states.lm_head.float()
    drafter.train()
    began = time.perf_counter()
    bar = tqdm(
        range(start, config.steps),
        desc="train",
        initial=start,
        total=config.steps,
        disable=not progress,
    )
    for step in bar:
        hidden, inputs, targets, next_states = sample_batch(
            shards, states, n, config.batch_positions, gen
        )
        logits = drafter(hidden, inputs)  # (n, B, V)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.T.flatten(), reduction="none")
        loss = ce.view(n, -1).mean(1).sum()
        if config.kl_weight > 0:
            with torch.no_grad():
                target_logp = torch.log_softmax(next_states.float() @ lm_head.T, -1).transpose(0, 1)
            kl = F.kl_div(
                torch.log_softmax(logits.float(), -1),
                target_logp,
                log_target=True,
                reduction="none",
            )
            loss = loss + config.kl_weight * kl.sum(-1).mean(1).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(drafter.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            acc = (logits.argmax(-1) == targets.T).float().mean(1).tolist()
        value = float(loss.detach())
        ema_loss = value if ema_loss is None else 0.98 * ema_loss + 0.02 * value
        ema_acc = [
            a if step == 0 else 0.98 * e + 0.02 * a for e, a in zip(ema_acc, acc, strict=True)
        ]
        bar.set_postfix(loss=f"{ema_loss:.3f}", acc="/".join(f"{a:.2f}" for a in ema_acc))
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            _save_checkpoint(
                out,
                drafter,
                {
                    "step": done,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": gen.get_state(),
                    "ema_loss": ema_loss,
                    "ema_acc": ema_acc,
                    "drafter_config": drafter.config.to_dict(),
                    "train_config": asdict(config),
                },
            )
        if on_step is not None:
            on_step(done)
    drafter.eval()
    report = {
        "steps": config.steps,
        "resumed_from": start,
        "seconds": round(time.perf_counter() - began, 1),
        "ema_loss": ema_loss,
        "ema_head_accuracy": ema_acc,
        "train_config": asdict(config),
    }
    (out / "train_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
