"""A drafter's name to its local checkpoint directory: a directory is used as is; anything
else is a Hugging Face Hub model id, resolved as vLLM resolves ``model`` (huggingface_hub's
``snapshot_download``: its cache, ``HF_HUB_OFFLINE``, a revision).

So ``"model": "Snowflake/Arctic-LSTM-Speculator-Llama-3.1-8B-Instruct"``, written for Arctic
Inference, works unchanged. huggingface_hub is imported only for a hub id (the [hub] extra).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType

from .exceptions import CheckpointError

HUB_EXTRA = 'pip install "arctic-drafters[hub]"'
# What a drafter is read from; nothing else in a repo (READMEs, training state) is fetched.
# The legacy pickle only when the repo has no safetensors: published Arctic repos may hold
# both, and drafter weights are gigabytes at real vocabularies.
HUB_FILES = ("config.json", "model.safetensors", "fp8_layers.safetensors")
LEGACY_WEIGHTS = "pytorch_model.bin"
# huggingface_hub's validate_repo_id rules: "name" or "namespace/name", at most 96 of
# [A-Za-z0-9_.-], no "--" or "..". Checked here so a mistyped local path is reported as one
# without importing huggingface_hub (and without asking the network).
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)?")
_TRUE = ("1", "ON", "YES", "TRUE")


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub model id (``org/name`` or ``name``)."""
    return (
        len(name) <= 96
        and _REPO_ID.fullmatch(name) is not None
        and "--" not in name
        and ".." not in name
    )


def _import_hub(name: str) -> ModuleType:
    try:
        import huggingface_hub
        import huggingface_hub.constants  # a submodule that the lazy package may not load
    except ImportError as exc:
        raise ImportError(
            f"drafter {name!r} is a Hugging Face Hub id, and fetching it needs huggingface_hub: "
            f"{HUB_EXTRA} (or pass a local checkpoint directory)"
        ) from exc
    return huggingface_hub


def _offline(hub: ModuleType) -> bool:
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; the environment of the call wins.
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value:
        return value.strip().upper() in _TRUE
    return bool(hub.constants.HF_HUB_OFFLINE)


def _cache_dir(hub: ModuleType, cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("HF_HUB_CACHE") or hub.constants.HF_HUB_CACHE)


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def resolve_checkpoint(
    name_or_path: str | os.PathLike[str],
    revision: str | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool | None = None,
) -> Path:
    """The local directory of a drafter checkpoint.

    A directory is returned as is (``revision`` does not apply to it, as in vLLM). Otherwise
    ``name_or_path`` must be a Hub model id: its snapshot at ``revision`` (branch, tag or
    commit; default ``main``) is found in the cache (``cache_dir``, else ``HF_HUB_CACHE``) or
    downloaded there. With ``HF_HUB_OFFLINE=1`` (or ``local_files_only=True``) only the cache
    is searched. Fetches config.json and the weights alone. Anything that cannot be found is
    a CheckpointError naming the id, the revision, the cache and whether offline mode was on.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = os.fspath(name_or_path)
    if not is_hub_id(name):
        raise CheckpointError(
            f"{name!r} is not a directory (so it has no config.json) nor a Hugging Face Hub "
            "model id ('org/name'): pass the drafter's checkpoint directory or its Hub id"
        )
    hub = _import_hub(name)
    cache = _cache_dir(hub, cache_dir)
    offline = _offline(hub) if local_files_only is None else local_files_only
    try:
        snapshot = Path(
            hub.snapshot_download(
                name,
                revision=revision,
                cache_dir=cache,
                allow_patterns=list(HUB_FILES),
                local_files_only=offline,
            )
        )
        if not (snapshot / "model.safetensors").is_file():
            snapshot = Path(
                hub.snapshot_download(
                    name,
                    revision=revision,
                    cache_dir=cache,
                    allow_patterns=[LEGACY_WEIGHTS],
                    local_files_only=offline,
                )
            )
    except (OSError, ValueError) as exc:  # every huggingface_hub lookup error is one of these
        raise CheckpointError(_not_found(name, revision, cache, offline, exc)) from exc
    return snapshot


def _not_found(name: str, revision: str | None, cache: Path, offline: bool, exc: Exception) -> str:
    where = f"revision {revision or 'main'!r}, cache {str(cache)!r}"
    download = f"hf download {name}" + (f" --revision {revision}" if revision else "")
    if offline:
        return (
            f"{name!r} is not a local directory, and the Hugging Face cache has no snapshot of "
            f"it ({where}); offline mode is on (HF_HUB_OFFLINE / local_files_only), so the Hub "
            f"was not asked: download it with network access (`{download}`), point "
            f"HF_HUB_CACHE at the cache that holds it, or pass its directory ({_reason(exc)})"
        )
    return (
        f"{name!r} is not a local directory and could not be fetched from the Hugging Face Hub "
        f"({where}): {_reason(exc)}. Check the id and the revision, log in (`hf auth login`) "
        "for a gated or private repo, or download it and pass its directory"
    )
