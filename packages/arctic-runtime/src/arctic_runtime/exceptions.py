"""Errors raised by arctic-runtime; each subclasses a built-in error and says what to change."""

from __future__ import annotations


class UnknownRequestError(KeyError):
    """A request id that was never started, or was already stopped."""

    def __str__(self) -> str:  # KeyError's default repr-quotes the message
        return str(self.args[0]) if self.args else ""


class DuplicateRequestError(ValueError):
    """`start_request` for an id that is still active."""


class DraftShapeError(ValueError):
    """Draft tokens, parents or probabilities that do not describe one path or tree."""


class TargetShapeError(ValueError):
    """Target outputs (argmax tokens, probabilities) whose shape does not fit the drafts they
    verify."""


class TensorDtypeError(TypeError):
    """A tensor of the wrong dtype: token ids and counts must be integers, probabilities
    floating point."""
