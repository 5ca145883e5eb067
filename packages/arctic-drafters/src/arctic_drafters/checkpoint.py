"""The native checkpoint (``config.json`` + one ``model.safetensors``) and target checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .arctic_format import (
    ARCTIC_ARCHITECTURES,
    arctic_config,
    import_arctic_checkpoint,
    is_arctic_config,
)
from .checkpoint_files import CONFIG_FILE, load_safetensors, read_config_json, safetensors_header
from .config import SpeculatorConfig, config_from_dict
from .exceptions import CheckpointError, IncompatibleTargetError
from .hub import resolve_checkpoint
from .speculator import Speculator
from .strict_load import build_on_meta, check_head_count, check_state_fits, load_state_dict_strict
from .strict_load import build_speculator as build_speculator  # re-exported: cli.py imports it

FORMAT_NAME = "arctic-drafters"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
SKIP_ARCHITECTURE_CHECK = "ARCTIC_INFERENCE_SKIP_SPEC_MODEL_CHECK"


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
    # n_predict rides along: a tied checkpoint stores one shared head whatever n_predict is,
    # yet the mixing weight depends on it, so only this tells an edited config.json apart.
    save_file(
        tensors, str(tmp), metadata={"format": "pt", "n_predict": str(model.config.n_predict)}
    )
    os.replace(tmp, out / WEIGHTS_FILE)
    tmp_cfg = out / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_cfg, out / CONFIG_FILE)
    return out


def _native_config(root: Path, data: dict[str, Any]) -> SpeculatorConfig:
    if data.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{root}: format_version {data.get('format_version')!r} is not supported "
            f"(this arctic-drafters reads version {FORMAT_VERSION})"
        )
    fields = {k: v for k, v in data.items() if k not in ("format", "format_version", "metadata")}
    try:
        return config_from_dict(fields)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc


def _unsupported(root: Path, data: dict[str, Any]) -> CheckpointError:
    return CheckpointError(
        f"{root / CONFIG_FILE} is neither an arctic-drafters checkpoint nor an Arctic / "
        f"vLLM mlp_speculator one (architectures={data.get('architectures')!r}, "
        f"model_type={data.get('model_type')!r}); supported architectures: "
        f"{', '.join(ARCTIC_ARCHITECTURES)}, or model_type 'mlp_speculator'"
    )


def load_drafter_config(
    path: str | os.PathLike[str], revision: str | None = None
) -> SpeculatorConfig:
    """The drafter's config from its ``config.json`` alone (native or Arctic / vLLM format):
    what a front end checks against the target without reading any weights. ``path``: a
    checkpoint directory or a Hugging Face Hub id (``resolve_checkpoint``)."""
    root = resolve_checkpoint(path, revision)
    data = read_config_json(root)
    if data.get("format") == FORMAT_NAME:
        return _native_config(root, data)
    if is_arctic_config(data):
        try:
            return arctic_config(data)
        except CheckpointError as exc:
            raise CheckpointError(f"{root / CONFIG_FILE}: {exc}") from exc
    raise _unsupported(root, data)


def _load_native(root: Path, data: dict[str, Any]) -> Speculator:
    config = _native_config(root, data)
    weights = root / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{root} has no {WEIGHTS_FILE}")
    shapes, metadata = safetensors_header(weights)  # no tensor is read yet
    saved = metadata.get("n_predict")  # absent in files saved before it was recorded
    if saved is not None and saved != str(config.n_predict):
        raise CheckpointError(
            f"{weights} was saved with n_predict={saved}, but {root / CONFIG_FILE} says "
            f"n_predict={config.n_predict}: set it back to {saved}"
        )
    check_head_count(shapes, config, str(weights))
    model = build_on_meta(config)
    check_state_fits(model, shapes, str(weights))
    load_state_dict_strict(model, load_safetensors(weights), str(weights))
    return model


def load_drafter(
    path: str | os.PathLike[str],
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    revision: str | None = None,
) -> Speculator:
    """Load a native checkpoint, or import an Arctic Inference / vLLM ``mlp_speculator`` one
    (chosen by config.json). The model is returned in eval mode. ``path``: a checkpoint
    directory or a Hugging Face Hub id, at ``revision`` (``resolve_checkpoint``).

    Every problem is a CheckpointError naming the file: an unreadable or corrupt file, a
    config field of the wrong type or past the limits in ``arctic_drafters.config``, tensors
    that do not fit the config (checked on the meta device, before the model is allocated),
    non-floating or non-finite weights."""
    root = resolve_checkpoint(path, revision)
    data = read_config_json(root)
    if data.get("format") == FORMAT_NAME:
        model = _load_native(root, data)
    elif is_arctic_config(data):
        model = import_arctic_checkpoint(root, data)
    else:
        raise _unsupported(root, data)
    if dtype is not None:
        model = model.to(dtype)
    return model.to(device).eval()


def _field(config: Any, name: str) -> Any:
    if isinstance(config, dict):
        return config.get(name)
    return getattr(config, name, None)


def _skip_architecture_check() -> bool:
    # Arctic Inference's switch, honoured so a deployment that sets it behaves the same here.
    return os.environ.get(SKIP_ARCHITECTURE_CHECK, "0") == "1"


def check_compatible(drafter: Speculator | SpeculatorConfig, target_config: Any) -> None:
    """Raise IncompatibleTargetError unless the drafter fits the target (an HF config object
    or a dict with ``vocab_size``, ``hidden_size`` and, optionally, ``architectures``).

    A drafter that records ``base_model_archs`` (Arctic's config field) must list the target's
    architecture (its first, as Arctic Inference compares), unless
    ``ARCTIC_INFERENCE_SKIP_SPEC_MODEL_CHECK=1``; one without the field, or a target config
    without ``architectures``, is checked by sizes alone."""
    config = drafter.config if isinstance(drafter, Speculator) else drafter
    vocab = _field(target_config, "vocab_size")
    hidden = _field(target_config, "hidden_size")
    if vocab is None or hidden is None:
        raise IncompatibleTargetError(
            "target config lacks vocab_size or hidden_size; pass the target's model config"
        )
    target_archs = _field(target_config, "architectures") or ()
    if isinstance(target_archs, str):
        target_archs = (target_archs,)
    if config.base_model_archs and target_archs and not _skip_architecture_check():
        target_arch = target_archs[0]
        if target_arch not in config.base_model_archs:
            raise IncompatibleTargetError(
                f"drafter was trained for base model architectures "
                f"{list(config.base_model_archs)} (base_model_archs), but the target is a "
                f"{target_arch}: use a drafter trained for {target_arch}, or set "
                f"{SKIP_ARCHITECTURE_CHECK}=1 if {target_arch} shares the trained model's "
                "hidden states (e.g. a renamed architecture)"
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
