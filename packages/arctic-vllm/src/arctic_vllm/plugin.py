"""The `vllm.general_plugins` entry point.

vLLM calls `register()` in every process it starts (front end, engine core, workers),
possibly more than once; it must be cheap, re-entrant and loud about what it did, because
vLLM only logs a plugin's import failure.
"""

from __future__ import annotations

import logging
import os

from . import contract

# A child of vLLM's logger: printed by its handlers, in its format, at its level
# (VLLM_LOGGING_LEVEL); vLLM's logger does not propagate to the root.
logger = logging.getLogger("vllm.arctic")

SUPPORTED_VLLM = contract.TESTED_VLLM  # tested; others are served when the contract holds
DISABLE_ENV = "ARCTIC_VLLM_DISABLE"

_registered: list[str] | None = None
# Why arctic cannot serve its methods on this vLLM (empty: it can). Read by the
# speculative_config patch, which refuses methods "arctic" / "suffix" naming these.
UNSERVABLE: list[str] = []


def register() -> list[str]:
    """Patch vLLM once per process; returns what was patched (empty when disabled).

    Never raises: vLLM calls general plugins with no try, so an exception here would abort
    every vLLM start, speculative or not. What cannot be done is logged loudly and, where
    arctic's methods are requested, refused then.
    """
    global _registered
    if os.environ.get(DISABLE_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        if _registered is None:
            logger.info("arctic-vllm: disabled by %s; vLLM runs unchanged", DISABLE_ENV)
            _registered = []
        return []
    if _registered is not None:
        return _registered
    try:
        _registered = _register()
    except Exception:
        logger.exception(
            "arctic-vllm: registration failed; vLLM runs without arctic (methods 'arctic' "
            "and 'suffix' are unavailable). Set %s=1 to silence this.",
            DISABLE_ENV,
        )
        UNSERVABLE[:] = ["arctic-vllm's registration failed (see the log above)"]
        _registered = []
    return _registered


def _register() -> list[str]:
    import vllm

    version = vllm.__version__
    if not contract.is_tested_version(version):
        logger.warning(
            "arctic-vllm %s is tested with vLLM %s; this is vLLM %s: checking what it needs "
            "of vLLM's internals instead",
            __import__("arctic_vllm").__version__, " and ".join(SUPPORTED_VLLM), version,
        )  # fmt: skip
    broken = contract.check_contract()
    for module, problems in broken.items():
        logger.error(
            "arctic-vllm: vLLM %s breaks the contract of %s: %s; that patch is not applied",
            version, module, "; ".join(problems),
        )  # fmt: skip
    UNSERVABLE[:] = contract.serving_problems(broken)
    from . import patches
    from .metrics_export import share_across_processes

    patched = patches.apply_all(skip=frozenset(broken))
    share_across_processes()
    if UNSERVABLE:
        logger.error(
            "arctic-vllm: methods 'arctic' and 'suffix' cannot be served on vLLM %s (%s); "
            "vLLM's own methods run unchanged",
            version, "; ".join(UNSERVABLE),
        )  # fmt: skip
    else:
        logger.warning(
            "arctic-vllm %s: speculative_config methods 'arctic', 'suffix' and "
            "'mlp_speculator' are served by arctic (vLLM %s); patched %d symbols: %s",
            __import__("arctic_vllm").__version__, version, len(patched),
            ", ".join(patched) or "(already patched)",
        )  # fmt: skip
    return [r.target for r in patches.LEDGER if r.module not in broken]
