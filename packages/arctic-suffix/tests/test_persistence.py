"""save/load: a round trip restores drafts; a bad file is refused and the cache untouched."""

from __future__ import annotations

from pathlib import Path

import pytest

from arctic_suffix import CacheFileError, SuffixCache


def build() -> SuffixCache:
    cache = SuffixCache(16, eviction="fifo")
    for i, ns in enumerate(["", "t1", ""]):
        cache.start_request(f"r{i}", [50, 51], namespace=ns)
        cache.add_tokens(f"r{i}", [i, 10, 11, 12, 13, i])
        cache.stop_request(f"r{i}")
    cache.start_request(99, [])
    cache.add_tokens(99, [7, 8, 9])
    cache.stop_request(99)
    return cache


def probe(cache: SuffixCache) -> list[list[int]]:
    out = []
    for i, (ctx, ns) in enumerate([([10, 11], ""), ([7], ""), ([2, 10], ""), ([1, 10], "t1")]):
        cache.start_request(f"probe{i}", ctx, namespace=ns)
        out.append(cache.speculate(f"probe{i}", extend=False).token_ids)
        cache.stop_request(f"probe{i}")
    return out


def test_round_trip(tmp_path: Path) -> None:
    a = build()
    want = probe(a)
    a.save(tmp_path / "cache.bin")
    b = SuffixCache(16)
    b.load(tmp_path / "cache.bin")
    assert b.cached_requests == a.cached_requests == ["r0", "r1", "r2", 99]
    assert b.cached_tokens == a.cached_tokens
    assert probe(b) == want
    assert want[3] == [11, 12]  # namespace "t1" survived the round trip
    b.check_integrity()


def corruptions(raw: bytes) -> dict[str, bytes]:
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x01
    version = bytearray(raw)
    version[8] = 99
    return {
        "flipped": bytes(flipped),
        "truncated": raw[: len(raw) - 7],
        "header-only": raw[:12],
        "empty": b"",
        "foreign": b"PK\x03\x04" + raw[4:],
        "version": bytes(version),
    }


@pytest.mark.parametrize(
    "kind", ["flipped", "truncated", "header-only", "empty", "foreign", "version"]
)
def test_bad_file_is_refused_and_cache_untouched(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "cache.bin"
    build().save(good)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(corruptions(good.read_bytes())[kind])
    target = SuffixCache(16)
    target.start_request("x", [])
    target.add_tokens("x", [4, 4, 4])
    target.stop_request("x")
    before = (target.cached_requests, target.cached_tokens, probe(target))
    with pytest.raises(CacheFileError) as err:
        target.load(bad)
    assert isinstance(err.value, ValueError)
    assert (target.cached_requests, target.cached_tokens, probe(target)) == before
    target.check_integrity()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot open"):
        SuffixCache(16).load(tmp_path / "nope.bin")


def test_load_respects_the_budget(tmp_path: Path) -> None:
    build().save(tmp_path / "c.bin")
    small = SuffixCache(16, max_cached_requests=2, eviction="fifo")
    small.load(tmp_path / "c.bin")
    assert small.cached_requests == ["r2", 99]


def test_round_trip_keeps_responses_cached_under_one_id(tmp_path: Path) -> None:
    a = SuffixCache(16, eviction="fifo")
    for out in ([1, 2, 3], [4, 5, 6]):
        a.start_request("same", [])
        a.add_tokens("same", out)
        a.stop_request("same")
    a.save(tmp_path / "c.bin")
    b = SuffixCache(16)
    b.load(tmp_path / "c.bin")
    assert b.cached_requests == ["same", "same"] and b.cached_tokens == 6
    b.start_request("p", [4])
    assert b.speculate("p", max_spec_offset=2, extend=False).token_ids == [5, 6]
    b.check_integrity()
