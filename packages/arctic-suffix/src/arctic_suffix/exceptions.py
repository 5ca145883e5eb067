"""Errors raised by arctic_suffix beyond the built-in ValueError / KeyError / TypeError."""

from __future__ import annotations


class CacheFileError(ValueError):
    """A cache file is corrupt, truncated or of an unsupported version; nothing was loaded."""


class CachePathError(ValueError):
    """A save/load path cannot be used; nothing was read or written.

    Raised for an empty path, a path holding a NUL character, a path naming something
    other than a regular file (a directory, FIFO, socket or device node, or a symlink to
    one), and for what the OS refuses (a missing file, no permission, a full disk).
    """


class IntegrityError(RuntimeError):
    """check_integrity() found a broken invariant (a bug: please report it)."""
