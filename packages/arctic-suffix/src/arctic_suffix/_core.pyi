"""Type stubs of the compiled module (kept honest by ``python -m mypy.stubtest``)."""

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy.typing as npt

# Lists of ints, 1-D numpy int32/int64 arrays (any byte order or strides) and other buffers
# of integers (array.array, memoryview), read by value.
_Tokens = Sequence[int] | npt.NDArray[Any]
_RequestId = str | int
# Taken as the bytes the OS sees (os.fsencode); empty or NUL-holding paths raise
# CachePathError.
_Path = str | bytes | PathLike[str] | PathLike[bytes]

MAX_DEPTH_LIMIT: int

class Draft:
    @property
    def token_ids(self) -> list[int]: ...
    @property
    def parents(self) -> list[int]: ...
    @property
    def probs(self) -> list[float]: ...
    @property
    def score(self) -> float: ...
    @property
    def match_len(self) -> int: ...
    def __len__(self) -> int: ...

class SuffixTree:
    def __init__(self, max_depth: int = 64) -> None: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def num_nodes(self) -> int: ...
    @property
    def num_tokens(self) -> int: ...
    def extend(self, seq_id: int, token_ids: _Tokens) -> None: ...
    def remove(self, seq_id: int) -> None: ...
    def __contains__(self, seq_id: int) -> bool: ...
    def __len__(self) -> int: ...
    def count(self, ngram: _Tokens) -> int: ...
    def speculate(
        self,
        context: _Tokens,
        max_spec_tokens: int | None = None,
        max_spec_factor: float = 1.0,
        max_spec_offset: float = 0.0,
        min_token_prob: float = 0.1,
        tree: bool = False,
    ) -> Draft: ...
    def check_integrity(self) -> None: ...
    def memory_bytes(self) -> int: ...

class SuffixCache:
    def __init__(
        self,
        max_depth: int = 64,
        max_cached_requests: int | None = None,
        max_cached_tokens: int | None = None,
        eviction: str = "lru",
        removal_chunk: int = 8192,
    ) -> None: ...
    @property
    def max_depth(self) -> int: ...
    @property
    def active_requests(self) -> list[_RequestId]: ...
    @property
    def cached_requests(self) -> list[_RequestId]:
        """Ids of the cached responses in eviction order, next victim first; an id appears
        once per response cached under it."""
    @property
    def cached_tokens(self) -> int: ...
    @property
    def pending_work(self) -> int: ...
    def start_request(self, req_id: _RequestId, prompt_ids: _Tokens, namespace: str = "") -> None:
        """Starts a request (KeyError if req_id is active). The id may be one with
        responses still in the global cache (a reused or restarted id): those stay cached
        (see stop_request)."""
    def add_tokens(self, req_id: _RequestId, token_ids: _Tokens) -> None: ...
    def speculate(
        self,
        req_id: _RequestId,
        context: _Tokens | None = None,
        max_spec_tokens: int | None = None,
        max_spec_factor: float = 1.0,
        max_spec_offset: float = 0.0,
        min_token_prob: float = 0.1,
        tree: bool = False,
        adaptive: bool = False,
        extend: bool = True,
    ) -> Draft: ...
    def stop_request(self, req_id: _RequestId) -> None:
        """Finishes a request: its output joins the namespace's global cache as a new entry.
        Entries cached earlier under the same id are kept beside it, never replaced;
        evict(req_id) removes them all."""

    def evict(self, req_id: _RequestId) -> None:
        """Removes every response cached under req_id (KeyError if none)."""
    def run_pending_work(self, max_units: int | None = None) -> int: ...
    def memory_bytes(self) -> int: ...
    def check_integrity(self) -> None: ...
    def save(self, path: _Path) -> None:
        """Writes the global cache to path atomically: a temporary file beside it, fsynced,
        renamed over it. A symlink is followed (a chain too, or one naming a file not yet
        made) and the file it names replaced; the link stays. A directory, FIFO, socket or
        device node (or a link to one), an empty path or one with a NUL raise
        CachePathError, and nothing is written."""

    def load(self, path: _Path) -> None:
        """Replaces the global cache with the one saved at path. Only a regular file (or a
        symlink to one) is opened, never a FIFO or a device, and no more than its size is
        read: anything else raises CachePathError, a corrupt file CacheFileError; the cache
        is then untouched."""
