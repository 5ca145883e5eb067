"""Errors raised by arctic_suffix beyond the built-in ValueError / KeyError."""

from __future__ import annotations


class CacheFileError(ValueError):
    """A cache file is corrupt, truncated or of an unsupported version; nothing was loaded."""


class IntegrityError(RuntimeError):
    """check_integrity() found a broken invariant (a bug: please report it)."""
