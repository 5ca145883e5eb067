"""Model-free suffix decoding (arXiv 2411.04975): a C++ suffix tree with Python bindings.

``SuffixCache`` is what a serving engine uses: one tree per request over its prompt and
output, and one global tree per namespace over earlier outputs. ``SuffixTree`` is the
building block, exposed for tools and tests. ``replay`` serves recorded token traces again
through a cache (or any ``Drafter``) with simulated verification, for offline evaluation.
"""

from __future__ import annotations

from arctic_suffix._core import MAX_DEPTH_LIMIT, Draft, SuffixCache, SuffixTree
from arctic_suffix.exceptions import CacheFileError, CachePathError, IntegrityError
from arctic_suffix.replay import (
    SPECULATE_OPTIONS,
    Drafter,
    ReplayStats,
    SuffixCacheDrafter,
    Trace,
    replay,
)

__all__ = [
    "MAX_DEPTH_LIMIT",
    "SPECULATE_OPTIONS",
    "CacheFileError",
    "CachePathError",
    "Draft",
    "Drafter",
    "IntegrityError",
    "ReplayStats",
    "SuffixCache",
    "SuffixCacheDrafter",
    "SuffixTree",
    "Trace",
    "replay",
]
__version__ = "0.1.0"
