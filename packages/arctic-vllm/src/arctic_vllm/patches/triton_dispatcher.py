"""Patch: vars() on slotted objects in vllm.triton_utils.dispatcher (see LEDGER)."""

from __future__ import annotations

import importlib
from typing import Any

_MARK = "__arctic_patched__"


def _vars_tolerating_slots(obj: Any) -> dict[str, Any]:
    # llvmlite's ffi.lib answers __dict__ with a function wrapper, not a dict.
    namespace = getattr(obj, "__dict__", None)
    return namespace if isinstance(namespace, dict) else {}


setattr(_vars_tolerating_slots, _MARK, True)


def apply() -> bool:
    try:
        dispatcher = importlib.import_module("vllm.triton_utils.dispatcher")
    except ImportError:
        return False  # not in this vLLM: nothing to fix
    if getattr(getattr(dispatcher, "vars", None), _MARK, False):
        return False
    # A module global shadows the builtin for that module's code only.
    dispatcher.vars = _vars_tolerating_slots  # type: ignore[attr-defined]
    return True
