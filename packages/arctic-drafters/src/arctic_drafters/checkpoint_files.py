"""Reading a checkpoint's files: ``config.json``, ``model.safetensors``, ``pytorch_model.bin``.

Whatever is wrong with a file (empty, truncated, bit-flipped, not UTF-8, not JSON, a pickle of
objects) becomes a ``CheckpointError`` that names the file and the problem, with the reader's
own error chained, so a caller never has to know safetensors' or pickle's exception types.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from .exceptions import CheckpointError

CONFIG_FILE = "config.json"

_CORRUPT_HINT = "the file is truncated or corrupt; copy or re-save it"


def read_config_json(root: Path) -> dict[str, Any]:
    """``root/config.json`` as a dict; a missing, unreadable or non-object file is an error."""
    path = root / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{root} has no {CONFIG_FILE}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read: {exc}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(
            f"{path} is not UTF-8 text (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); "
            "a config.json must be UTF-8 JSON"
        ) from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got a {type(data).__name__}")
    return data


def safetensors_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Every tensor's shape and the file's metadata, read from the header alone (no tensor
    data is loaded). safetensors checks that the header's offsets cover the file exactly, so
    a truncated or padded file fails here."""
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in names}
            return shapes, dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise _unreadable_safetensors(path, exc) from exc


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise _unreadable_safetensors(path, exc) from exc


def _unreadable_safetensors(path: Path, exc: Exception) -> CheckpointError:
    return CheckpointError(f"{path} is not a readable safetensors file ({exc}): {_CORRUPT_HINT}")


def _unpickler_reason(exc: Exception) -> str:
    # torch's message is a paragraph on loading untrusted files; the reason is one sentence
    # after "WeightsUnpickler error:" ("Unsupported global: GLOBAL builtins.print ...").
    text = " ".join(str(exc).split())
    _, found, reason = text.partition("WeightsUnpickler error:")
    reason = (reason if found else text).split(" Check the documentation")[0]
    return reason.split(". ")[0].strip() or type(exc).__name__


def load_torch_bin(path: Path) -> dict[str, torch.Tensor]:
    """A legacy ``pytorch_model.bin`` state dict of tensors, unpickled with weights_only=True
    (so a pickle cannot run code on load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global other than tensors and plain containers; a corrupt
        # pickle stream lands here too.
        raise CheckpointError(
            f"{path} could not be loaded with weights_only=True: it holds objects other than "
            f"tensors, or is corrupt ({_unpickler_reason(exc)}); re-save it as a plain state dict"
        ) from exc
    except Exception as exc:  # torch.load raises EOFError, RuntimeError, IndexError, ...
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable torch.save file ({reason}): {_CORRUPT_HINT}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    not_tensors = sorted(
        str(k) for k, v in state.items() if not isinstance(k, str) or not torch.is_tensor(v)
    )
    if not_tensors:
        raise CheckpointError(f"{path}: entries {not_tensors} are not named tensors")
    return state
