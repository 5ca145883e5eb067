"""Errors raised by arctic-runtime; each subclasses a built-in error and says what to change."""

from __future__ import annotations


class DraftShapeError(ValueError):
    """Draft tokens, parents or probabilities that do not describe one path or tree."""


class TargetShapeError(ValueError):
    """Target outputs (argmax tokens, probabilities) whose shape does not fit the drafts they
    verify."""


class TensorDtypeError(TypeError):
    """A tensor of the wrong dtype: token ids and counts must be integers, probabilities
    floating point."""


class VerifyInputError(ValueError):
    """A negative token id, position or KV-cache length given to a verifier."""
