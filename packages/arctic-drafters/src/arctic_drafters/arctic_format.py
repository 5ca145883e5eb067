"""Import of the anchor's checkpoints: Arctic Inference (ArcticTraining output) and vLLM's
``mlp_speculator`` (IBM's format, arXiv 2404.19124).

Both store ``config.json`` plus ``pytorch_model.bin`` (or ``model.safetensors``). Keys may carry
a ``speculator.`` prefix; Arctic's ``sum_rnn`` wraps each module in a one-element Sequential
(``emb.0.0.weight``); tied checkpoints may repeat a shared tensor under every head's index.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .checkpoint_files import CONFIG_FILE, load_safetensors, load_torch_bin
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import CheckpointError
from .layers import tied_index, tied_proj_index
from .strict_load import (
    HEAD_KEY,
    build_on_meta,
    check_head_count,
    check_weight_values,
    load_state_dict_strict,
)

ARCTIC_ARCHITECTURES = (
    "ArcticLSTMSpeculatorPreTrainedModel",
    "ArcticMLPSpeculatorPreTrainedModel",
    "MLPSpeculatorPreTrainedModel",
)
_MLP_KEY = re.compile(r"^(emb|proj|ln)\.(\d+)(?:\.0)?\.(weight|bias)$")
_LSTM_KEY = re.compile(r"^(projs|cell_ln|state_ln)\.(\d+)\.(weight|bias)$")
_LSTM_EMBS = ("forget_emb", "input_emb", "output_emb", "cell_emb")  # gate order of the sum
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


def _dims(name: str, value: Any) -> list[int]:
    """Arctic writes stacked widths as dotted strings ("4096.4096"); ints are one layer.
    Floats and bools are refused: 4096.7 or true is a broken config, not a width."""
    if isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
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


def _int(data: dict[str, Any], name: str) -> int:
    parts = _dims(name, data[name])
    if len(parts) != 1:
        raise CheckpointError(f"config field {name}={data[name]!r} must be one int")
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


def arctic_config(data: dict[str, Any]) -> SpeculatorConfig:
    """Map an anchor config.json onto our config (CheckpointError for anything we cannot run:
    an unknown architecture, a field of the wrong type, sizes past the config's limits)."""
    _check_architectures(data)
    _require(data, "vocab_size", "emb_dim", "n_predict")
    common: dict[str, Any] = {
        "vocab_size": _int(data, "vocab_size"),
        "n_predict": _int(data, "n_predict"),
        "tie_weights": _bool(data, "tie_weights", False),
        "scale_input": _bool(data, "scale_input", False),
    }
    try:
        if "input_hidden_dim" not in data:  # IBM / vLLM MLPSpeculator
            width = _dims("emb_dim", data["emb_dim"])[0]
            inner_width = _dims("inner_dim", data.get("inner_dim", 0))[0] or width
            return MLPSpeculatorConfig(hidden_size=width, inner_dim=inner_width, **common)
        method = data.get("method", "sum_rnn")
        emb = _dims("emb_dim", data["emb_dim"])
        inner = _dims("inner_dim", data.get("inner_dim", data["emb_dim"]))
        proj = _dims("proj_dim", data.get("proj_dim", data["emb_dim"]))
        widths = {emb[0], inner[0], inner[-1], proj[0]}
        stacked = len(emb) > 1 or len(inner) > 1 or len(proj) > 1
        if len(widths) != 1 or (stacked and method != "sum_lstm"):
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


def _canonical_index(module: str, index: int, config: SpeculatorConfig) -> int:
    if module in ("proj", "projs"):
        return tied_proj_index(index, config.tie_weights)
    return tied_index(index, config.tie_weights)


def _rename(state: dict[str, torch.Tensor], config: SpeculatorConfig) -> dict[str, torch.Tensor]:
    """Anchor keys -> native keys. A tied tensor repeated under several heads must be identical
    to the copy we keep; unknown keys are kept as-is so the strict load names them."""
    out: dict[str, torch.Tensor] = {}
    is_lstm = isinstance(config, LSTMSpeculatorConfig) and config.method == "sum_lstm"
    lstm_embs: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        match = (_LSTM_KEY if is_lstm else _MLP_KEY).match(key) or HEAD_KEY.match(key)
        lstm_emb = re.match(r"^(\w+_emb)\.0\.weight$", key) if is_lstm else None
        if lstm_emb and lstm_emb.group(1) in _LSTM_EMBS:
            lstm_embs[lstm_emb.group(1)] = value
            continue
        if match is None:
            out[key] = value
            continue
        if key.startswith("head."):
            module, index, param = "head", int(match.group(1)), "weight"
        else:
            module, index, param = match.group(1), int(match.group(2)), match.group(3)
        native_module = {"projs": "proj"}.get(module, module)
        native = f"{native_module}.{_canonical_index(module, index, config)}.{param}"
        if native in out and not torch.equal(out[native], value):
            raise CheckpointError(
                f"{key} differs from the tensor it is tied to ({native}) under tie_weights=true"
            )
        out[native] = value
    if is_lstm:
        assert isinstance(config, LSTMSpeculatorConfig)
        names = _LSTM_EMBS[:1] if config.tie_lstm_embs else _LSTM_EMBS
        absent = [f"{n}.0.weight" for n in names if n not in lstm_embs]
        extra = [f"{n}.0.weight" for n in lstm_embs if n not in names]
        if absent or extra:
            raise CheckpointError(
                f"LSTM embeddings do not fit tie_lstm_embs={config.tie_lstm_embs}: "
                f"missing {absent}, unexpected {extra}"
            )
        out["emb.0.weight"] = torch.cat([lstm_embs[n] for n in names], dim=-1)
    return out


def import_arctic_checkpoint(root: Path, data: dict[str, Any]) -> Any:
    """Build our speculator from an anchor checkpoint directory (config already parsed).

    The file's tensors are read (memory bounded by the file's size) and checked before the
    model is allocated: it is built on the meta device until they fit."""
    try:
        config = arctic_config(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc
    state, source = _load_weights(root)
    check_weight_values(state, source)  # before _rename: NaN never equals its tied copy
    check_head_count(state, config, source)
    model = build_on_meta(config)
    load_state_dict_strict(model, _rename(state, config), source, check_values=False)
    return model
