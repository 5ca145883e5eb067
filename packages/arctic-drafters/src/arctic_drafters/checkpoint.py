"""The native checkpoint (``config.json`` + one ``model.safetensors``) and target checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig, config_from_dict
from .exceptions import CheckpointError, IncompatibleTargetError
from .lstm import LSTMSpeculator
from .mlp import MLPSpeculator
from .speculator import Speculator

FORMAT_NAME = "arctic-drafters"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def build_speculator(config: SpeculatorConfig) -> Speculator:
    if isinstance(config, LSTMSpeculatorConfig):
        return LSTMSpeculator(config)
    if isinstance(config, MLPSpeculatorConfig):
        return MLPSpeculator(config)
    raise TypeError(f"not a speculator config: {type(config).__name__}")


def load_state_dict_strict(model: Speculator, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error
    that names every offender (checked before anything is copied)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(state) & set(expected))
        if state[k].shape != expected[k].shape
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
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k])


def save_drafter(
    model: Speculator,
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into directory ``path``.

    ``dtype`` (e.g. ``torch.bfloat16``) converts floating weights on the way out; ``metadata``
    (JSON-serialisable: target name, training report) is stored in config.json.
    """
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    config = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        **model.config.to_dict(),
        "metadata": metadata or {},
    }
    # Temp file + rename: a crash mid-write never leaves a half-written checkpoint behind.
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / WEIGHTS_FILE)
    tmp_cfg = out / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_cfg, out / CONFIG_FILE)
    return out


def read_config_json(path: Path) -> dict[str, Any]:
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{path} has no {CONFIG_FILE}")
    try:
        data = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg_path} must hold a JSON object")
    return data


def load_drafter(
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> Speculator:
    """Load a native checkpoint, or import an Arctic Inference / vLLM ``mlp_speculator`` one
    (chosen by config.json). The model is returned in eval mode."""
    from .arctic_format import import_arctic_checkpoint, is_arctic_config

    root = Path(path)
    data = read_config_json(root)
    if data.get("format") == FORMAT_NAME:
        if data.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(
                f"{root}: format_version {data.get('format_version')!r} is not supported "
                f"(this arctic-drafters reads version {FORMAT_VERSION})"
            )
        fields = {
            k: v for k, v in data.items() if k not in ("format", "format_version", "metadata")
        }
        try:
            config = config_from_dict(fields)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc
        weights = root / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{root} has no {WEIGHTS_FILE}")
        model = build_speculator(config)
        load_state_dict_strict(model, load_file(str(weights)), str(weights))
    elif is_arctic_config(data):
        model = import_arctic_checkpoint(root, data)
    else:
        raise CheckpointError(
            f"{root / CONFIG_FILE} is neither an arctic-drafters checkpoint nor an Arctic / "
            f"vLLM mlp_speculator one (architectures={data.get('architectures')!r}, "
            f"model_type={data.get('model_type')!r})"
        )
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def _field(config: Any, name: str) -> Any:
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def check_compatible(drafter: Speculator | SpeculatorConfig, target_config: Any) -> None:
    """Raise IncompatibleTargetError unless the drafter fits the target (an HF config object
    or a dict with ``vocab_size`` and ``hidden_size``)."""
    config = drafter.config if isinstance(drafter, Speculator) else drafter
    vocab = _field(target_config, "vocab_size")
    hidden = _field(target_config, "hidden_size")
    if vocab is None or hidden is None:
        raise IncompatibleTargetError(
            "target config lacks vocab_size or hidden_size; pass the target's model config"
        )
    if vocab != config.vocab_size:
        raise IncompatibleTargetError(
            f"drafter vocab_size {config.vocab_size} != target vocab_size {vocab}: the drafter "
            "was trained for another tokenizer; train one for this target"
        )
    if hidden != config.hidden_size:
        raise IncompatibleTargetError(
            f"drafter hidden_size {config.hidden_size} != target hidden_size {hidden}: it reads "
            "another model's hidden states; train one for this target"
        )
