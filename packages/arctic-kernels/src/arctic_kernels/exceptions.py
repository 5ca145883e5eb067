"""Errors raised by arctic_kernels; each subclasses a built-in error and says what to change."""

from __future__ import annotations


class NonFiniteInputError(ValueError):
    """A tensor to be quantized holds NaN or Inf, which has no FP8 e4m3 scale."""


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run on this tensor's device or in this environment."""


class ShardingError(ValueError):
    """Shard sizes, offsets or k are inconsistent across the tensor-parallel group."""
