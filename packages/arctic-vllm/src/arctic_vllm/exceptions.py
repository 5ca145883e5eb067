"""Errors raised by arctic-vllm; each subclasses a built-in error and says what to change."""

from __future__ import annotations


class ArcticConfigError(ValueError):
    """A speculative_config that arctic cannot serve (unknown option, bad value, missing
    drafter, drafter incompatible with the target)."""


class UnsupportedVllmError(RuntimeError):
    """The installed vLLM lacks a symbol, or a signature, that serving arctic's methods needs
    (arctic_vllm.contract); raised only when such a method is requested."""


class PatchError(RuntimeError):
    """A patch applied twice, or a patch target that no longer exists in vLLM."""
