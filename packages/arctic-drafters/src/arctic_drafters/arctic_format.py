"""Import of the anchor's checkpoints: Arctic Inference (ArcticTraining output) and vLLM's
``mlp_speculator`` (IBM's format, arXiv 2404.19124): their ``config.json`` mapped onto ours.

Both store ``config.json`` plus ``pytorch_model.bin`` (or ``model.safetensors``); the tensor
layouts are in ``arctic_layout``. The architecture picks the reader as Arctic Inference's
model registry does: ``ArcticLSTMSpeculatorPreTrainedModel`` and
``MLPVariantSpeculatorPreTrainedModel`` are ``ArcticLSTMSpeculator`` (``input_hidden_dim``
the target's width, ``method`` sum_lstm / sum_rnn), ``ArcticMLPSpeculatorPreTrainedModel``
and vLLM's ``MLPSpeculatorPreTrainedModel`` the IBM MLP (``emb_dim`` the target's width).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .arctic_layout import anchor_to_native
from .checkpoint_files import CONFIG_FILE, load_safetensors, load_torch_bin
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import CheckpointError
from .strict_load import (
    build_on_meta,
    check_head_count,
    check_weight_values,
    load_state_dict_strict,
)

ARCTIC_LSTM_ARCHITECTURE = "ArcticLSTMSpeculatorPreTrainedModel"
ARCTIC_MLP_ARCHITECTURE = "ArcticMLPSpeculatorPreTrainedModel"
VLLM_MLP_ARCHITECTURE = "MLPSpeculatorPreTrainedModel"
# Arctic Inference registers this name for ArcticLSTMSpeculator too ("used in corvo").
MLP_VARIANT_ARCHITECTURE = "MLPVariantSpeculatorPreTrainedModel"
ARCTIC_ARCHITECTURES = (
    ARCTIC_LSTM_ARCHITECTURE,
    ARCTIC_MLP_ARCHITECTURE,
    VLLM_MLP_ARCHITECTURE,
    MLP_VARIANT_ARCHITECTURE,
)
_ARCTIC_LAYOUT = (ARCTIC_LSTM_ARCHITECTURE, MLP_VARIANT_ARCHITECTURE)
_DOTTED_INTS = re.compile(r"[0-9]+(?:\.[0-9]+)*")  # ASCII digits only: int() takes "1_0", "٣"


def _architectures(data: dict[str, Any]) -> list[Any]:
    archs = data.get("architectures")
    if archs is None:
        return []
    return archs if isinstance(archs, list) else [archs]


def is_arctic_config(data: dict[str, Any]) -> bool:
    return data.get("model_type") == "mlp_speculator" or any(
        a in ARCTIC_ARCHITECTURES for a in _architectures(data)
    )


def _check_architectures(data: dict[str, Any]) -> None:
    archs = data.get("architectures")
    supported = ", ".join(ARCTIC_ARCHITECTURES)
    if not isinstance(archs, list | None):
        raise CheckpointError(
            f"architectures must be a list of names, got {archs!r} (supported: {supported})"
        )
    unknown = [a for a in _architectures(data) if a not in ARCTIC_ARCHITECTURES]
    if unknown:
        raise CheckpointError(
            f"architecture {', '.join(map(repr, unknown))} is not supported; supported "
            f"speculator architectures: {supported}"
        )
    if len(_architectures(data)) > 1:
        raise CheckpointError(
            f"architectures={archs!r} names more than one model; a speculator config names "
            "exactly one (Arctic Inference refuses others)"
        )


def _reads_arctic_layout(data: dict[str, Any]) -> bool:
    """ArcticLSTMSpeculator's fields and keys (else the IBM MLP's). A config that names vLLM's
    MLPSpeculatorPreTrainedModel (or nothing) but carries ``input_hidden_dim`` is what
    ArcticTraining's MLP-variant writer produces: Arctic's fields under vLLM's name."""
    archs = _architectures(data)
    if any(a in _ARCTIC_LAYOUT for a in archs):
        return True
    if ARCTIC_MLP_ARCHITECTURE in archs:
        return False
    return "input_hidden_dim" in data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dims(name: str, value: Any) -> list[int]:
    """Arctic writes stacked widths as dotted strings ("4096.4096") or lists; an int is one
    layer. Floats and bools are refused: 4096.7 or true is a broken config, not a width."""
    if isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, list) and value and all(_is_int(v) for v in value):
        parts = list(value)  # Arctic Inference's _parse_dim takes a list too
    elif isinstance(value, str) and _DOTTED_INTS.fullmatch(value):
        try:
            parts = [int(v) for v in value.split(".")]
        except ValueError as exc:  # more digits than int() converts
            raise CheckpointError(f"config field {name}={value!r} is too long") from exc
    else:
        raise CheckpointError(f"config field {name}={value!r} is not an int or dotted ints")
    if any(p < 0 for p in parts):
        raise CheckpointError(f"config field {name}={value!r} must be non-negative")
    return parts


def _int(data: dict[str, Any], name: str, default: int | None = None) -> int:
    value = data[name] if default is None else data.get(name, default)
    parts = _dims(name, value)
    if len(parts) != 1:
        raise CheckpointError(f"config field {name}={value!r} must be one int")
    return parts[0]


def _bool(data: dict[str, Any], name: str, default: bool) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise CheckpointError(f"config field {name}={value!r} must be true or false")
    return value


def _require(data: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in data]
    if missing:
        raise CheckpointError(f"Arctic/vLLM speculator config.json lacks fields {missing}")


def _names(data: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list of names (Arctic's ``base_model_archs``); one string is one name."""
    value = data.get(name)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CheckpointError(f"config field {name}={value!r} must be a list of names")
    return tuple(value)


def arctic_config(data: dict[str, Any]) -> SpeculatorConfig:
    """Map an anchor config.json onto our config (CheckpointError for anything we cannot run:
    an unknown architecture, a field of the wrong type, sizes past the config's limits).

    Defaults are vLLM's MLPSpeculatorConfig's where Arctic Inference reads them from it
    (``inner_dim`` 0: ``emb_dim``; ``tie_weights`` / ``scale_input`` false; ``method``
    sum_rnn); ``proj_dim`` defaults to ``emb_dim`` and ``tie_lstm_embs`` to true, the only
    value Arctic runs (it requires both fields)."""
    _check_architectures(data)
    arctic = _reads_arctic_layout(data)
    _require(data, "vocab_size", "emb_dim", "n_predict", *(["input_hidden_dim"] if arctic else []))
    common: dict[str, Any] = {
        "vocab_size": _int(data, "vocab_size"),
        "n_predict": _int(data, "n_predict"),
        "tie_weights": _bool(data, "tie_weights", False),
        "scale_input": _bool(data, "scale_input", False),
        "base_model_archs": _names(data, "base_model_archs"),
    }
    try:
        if not arctic:  # IBM / vLLM MLPSpeculator, ArcticMLPSpeculator: emb_dim reads the target
            width = _int(data, "emb_dim")
            inner_width = _int(data, "inner_dim", default=0)
            return MLPSpeculatorConfig(hidden_size=width, inner_dim=inner_width or width, **common)
        method = data.get("method", "sum_rnn")
        emb = _dims("emb_dim", data["emb_dim"])
        inner = _dims("inner_dim", data.get("inner_dim", data["emb_dim"]))
        proj = _dims("proj_dim", data.get("proj_dim", data["emb_dim"]))
        widths = {emb[0], inner[0], inner[-1], proj[0]}
        stacked = len(emb) > 1 or len(inner) > 1 or len(proj) > 1
        if len(widths) != 1 or (stacked and method != "sum_lstm"):
            # sum_lstm reads only the first width of each; sum_rnn would stack extra
            # LN / GELU / Linear layers per width, which no published drafter has.
            raise CheckpointError(
                f"emb_dim={data['emb_dim']!r}, inner_dim={data.get('inner_dim')!r}, "
                f"proj_dim={data.get('proj_dim')!r}: only one common width is supported "
                "(stacked sum_rnn layers are not)"
            )
        if method == "sum_lstm" and not common["tie_weights"]:
            raise CheckpointError("method 'sum_lstm' checkpoints must have tie_weights=true")
        return LSTMSpeculatorConfig(
            hidden_size=_int(data, "input_hidden_dim"),
            inner_dim=inner[0],
            method=method,
            tie_lstm_embs=_bool(data, "tie_lstm_embs", True),
            **common,
        )
    except (ValueError, TypeError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"unsupported speculator config: {exc}") from exc


def _load_weights(root: Path) -> tuple[dict[str, torch.Tensor], str]:
    bin_path, st_path = root / "pytorch_model.bin", root / "model.safetensors"
    if bin_path.is_file():
        state, source = load_torch_bin(bin_path), str(bin_path)
    elif st_path.is_file():
        state, source = load_safetensors(st_path), str(st_path)
    else:
        raise CheckpointError(f"{root} has neither pytorch_model.bin nor model.safetensors")
    return {k.removeprefix("speculator."): v for k, v in state.items()}, source


def import_arctic_checkpoint(root: Path, data: dict[str, Any]) -> Any:
    """Build our speculator from an anchor checkpoint directory (config already parsed).

    The file's tensors are read (memory bounded by the file's size) and checked before the
    model is allocated: it is built on the meta device until they fit."""
    try:
        config = arctic_config(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc
    state, source = _load_weights(root)
    check_weight_values(state, source)  # before renaming: NaN never equals its tied copy
    check_head_count(state, config, source)
    model = build_on_meta(config)
    try:
        native = anchor_to_native(state, config)
    except CheckpointError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    load_state_dict_strict(model, native, source, check_values=False)
    return model
