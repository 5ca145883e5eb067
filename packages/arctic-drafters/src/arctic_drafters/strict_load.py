"""Building a speculator from its config and loading weights into it strictly.

Shared by the native checkpoint (``checkpoint.py``) and the Arctic / vLLM import
(``arctic_format.py``): the model is built on the meta device, the stored tensors are checked
against it (keys, shapes, head count, dtypes, finiteness) and only then is memory allocated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import torch

from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import CheckpointError
from .lstm import LSTMSpeculator
from .mlp import MLPSpeculator
from .speculator import Speculator

# A head's weight in both the native and the anchor checkpoints (after the prefix is removed).
HEAD_KEY = re.compile(r"^head\.(\d+)\.weight$")
# isfinite has no kernel for the float8 types; those are checked in float32.
_ISFINITE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def build_speculator(config: SpeculatorConfig) -> Speculator:
    if isinstance(config, LSTMSpeculatorConfig):
        return LSTMSpeculator(config)
    if isinstance(config, MLPSpeculatorConfig):
        return MLPSpeculator(config)
    raise TypeError(f"not a speculator config: {type(config).__name__}")


def build_on_meta(config: SpeculatorConfig) -> Speculator:
    """The model with every tensor on the meta device: shapes without memory. Loading checks
    the checkpoint against these before anything is allocated."""
    with torch.device("meta"):
        return build_speculator(config)


def check_state_fits(model: Speculator, shapes: Mapping[str, Sequence[int]], source: str) -> None:
    """Any missing, unexpected or mis-shaped key is an error that names every offender."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(shapes[k])} vs model {expected[k]}"
        for k in sorted(set(shapes) & set(expected))
        if tuple(shapes[k]) != expected[k]
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches {mismatched}")
    if problems:
        raise CheckpointError(f"{source} does not fit the config: " + "; ".join(problems))


def check_head_count(keys: Iterable[str], config: SpeculatorConfig, source: str) -> None:
    """The heads stored (``head.i.weight``) must be the config's ``n_predict``; only a tied
    checkpoint may store its one shared head once."""
    heads = {int(m.group(1)) for k in keys if (m := HEAD_KEY.match(k))}
    if not heads or (config.tie_weights and heads == {0}):
        return  # no head at all: check_state_fits names the missing head.0.weight
    stored = max(heads) + 1
    if stored != config.n_predict:
        raise CheckpointError(
            f"{source} stores {stored} heads (head.0 .. head.{stored - 1}) but the config's "
            f"n_predict is {config.n_predict}: set n_predict to {stored} in config.json"
        )


def check_weight_values(state: Mapping[str, torch.Tensor], source: str) -> None:
    """Weights must be floating point and finite; every offending tensor is named."""
    not_float = [f"{k}: {v.dtype}" for k, v in sorted(state.items()) if not v.is_floating_point()]
    if not_float:
        raise CheckpointError(
            f"{source}: drafter weights must be floating point, got {not_float}; re-save the "
            "checkpoint with float weights (float32 / bfloat16 / float16)"
        )
    not_finite = []
    for k, v in sorted(state.items()):
        bad = int((~torch.isfinite(v if v.dtype in _ISFINITE_DTYPES else v.float())).sum())
        if bad:
            not_finite.append(f"{k}: {bad} of {v.numel()} values")
    if not_finite:
        raise CheckpointError(
            f"{source}: tensors hold NaN or inf values {not_finite}; the file is corrupt or "
            "training diverged: use an earlier checkpoint"
        )


def load_state_dict_strict(
    model: Speculator,
    state: Mapping[str, torch.Tensor],
    source: str,
    check_values: bool = True,
) -> None:
    """Copy ``state`` into ``model`` (allocated here when built by ``build_on_meta``). Keys,
    shapes and (unless the caller did so) dtypes and finiteness are checked before anything
    is allocated or copied."""
    check_state_fits(model, {k: tuple(v.shape) for k, v in state.items()}, source)
    if check_values:
        check_weight_values(state, source)
    if any(t.is_meta for t in model.state_dict().values()):
        model.to_empty(device="cpu")
    with torch.no_grad():
        for k, v in model.state_dict().items():
            v.copy_(state[k])
