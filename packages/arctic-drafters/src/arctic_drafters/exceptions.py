"""Errors raised by arctic_drafters. Each subclasses a built-in so callers may catch either."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint directory is missing a file, or its config or weights do not match."""


class IncompatibleTargetError(ValueError):
    """A drafter was trained for a target with another vocabulary or hidden size."""


class DatasetError(ValueError):
    """A prompt file or token shard has no usable rows or rows the target cannot take."""


class TrainingStateError(RuntimeError):
    """A resume checkpoint does not belong to the run being resumed."""


class ExportError(ValueError):
    """A drafter cannot be written in the requested format: its reader could not run it."""
