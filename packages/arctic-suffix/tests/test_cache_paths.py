"""save/load paths: only regular files are read or replaced, a symlink is written through,
and str / bytes / os.PathLike paths are taken exactly (no NUL, no empty path). Every FIFO
and device node here is made in tmp_path; no test touches a system path."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from arctic_suffix import CacheFileError, CachePathError, SuffixCache


def filled() -> SuffixCache:
    cache = SuffixCache(8)
    cache.start_request("r", [])
    cache.add_tokens("r", [1, 2, 3, 1, 2])
    cache.stop_request("r")
    return cache


def char_device(path: Path, minor: int) -> Path:
    """A character device node of the mem driver (major 1), made here, or a skip."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, minor))
    except (PermissionError, OSError) as e:
        pytest.skip(f"cannot make a device node here: {e}")
    return path


def without_blocking(fifo: Path, call: Callable[[], None]) -> BaseException | None:
    """Runs call in a thread; should it block on the FIFO, a writer that closes at once
    ends the read with end-of-file, and the test fails."""
    caught: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as e:  # reported to the test below
            caught.append(e)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(30)
    if worker.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        worker.join(30)
        pytest.fail(f"the call blocked on the FIFO {fifo}")
    return caught[0] if caught else None


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name)


# --- load ---------------------------------------------------------------------------------


def test_load_of_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "cache.fifo"
    os.mkfifo(fifo)
    cache = filled()
    err = without_blocking(fifo, lambda: cache.load(fifo))
    assert isinstance(err, CachePathError), err
    assert "FIFO" in str(err) and str(fifo) in str(err)
    assert cache.cached_requests == ["r"]


def test_load_of_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "cache.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "cache.bin"
    link.symlink_to(fifo)
    err = without_blocking(fifo, lambda: SuffixCache(8).load(link))
    assert isinstance(err, CachePathError) and "FIFO" in str(err)


_LOAD_IN_A_CHILD = textwrap.dedent(
    """
    import os, resource, sys
    # Should the load read the device without end, it fails here instead of taking the
    # machine's memory (not under ASan, which reserves terabytes of address space).
    if "asan" not in os.environ.get("LD_PRELOAD", ""):
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from arctic_suffix import CachePathError, SuffixCache
    try:
        SuffixCache(8).load(sys.argv[1])
    except CachePathError as e:
        print("refused:", e)
    """
)


def test_load_of_an_endless_device_is_refused(tmp_path: Path) -> None:
    zero = char_device(tmp_path / "zero", 5)  # what /dev/zero is: endless zero bytes
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_A_CHILD, str(zero)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:"), done.stdout + done.stderr
    assert "character device" in done.stdout and str(zero) in done.stdout


def test_load_of_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CachePathError, match="directory"):
        SuffixCache(8).load(tmp_path)


def test_load_refuses_a_header_declaring_more_entries_than_the_file_holds(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.bin"
    filled().save(good)
    raw = bytearray(good.read_bytes())
    raw[16:24] = (2**62).to_bytes(8, "little")  # the entry count
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CacheFileError, match=f"declares {2**62} entries") as err:
        SuffixCache(8).load(bad)
    assert str(bad) in str(err.value)


# --- save ---------------------------------------------------------------------------------


def test_save_to_a_fifo_is_refused_and_the_fifo_kept(tmp_path: Path) -> None:
    fifo = tmp_path / "cache.fifo"
    os.mkfifo(fifo)
    err = without_blocking(fifo, lambda: filled().save(fifo))
    assert isinstance(err, CachePathError) and "FIFO" in str(err) and str(fifo) in str(err)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert leftovers(tmp_path) == []


def test_save_to_a_device_node_is_refused_and_the_node_kept(tmp_path: Path) -> None:
    full = char_device(tmp_path / "full", 7)  # what /dev/full is
    with pytest.raises(CachePathError, match="character device"):
        filled().save(full)
    mode = os.lstat(full).st_mode
    assert stat.S_ISCHR(mode) and os.major(os.lstat(full).st_rdev) == 1
    assert leftovers(tmp_path) == []


def test_save_to_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for target in (tmp_path / "d", f"{tmp_path}/d/", f"{tmp_path}/d/."):
        with pytest.raises(CachePathError, match="directory"):
            filled().save(target)
    assert list((tmp_path / "d").iterdir()) == []


def test_save_writes_through_a_symlink_and_keeps_it(tmp_path: Path) -> None:
    real = tmp_path / "data" / "cache.bin"
    real.parent.mkdir()
    real.write_bytes(b"old")
    real.chmod(0o640)
    link = tmp_path / "cache.bin"
    link.symlink_to(Path("data") / "cache.bin")  # relative, resolved from the link's dir
    filled().save(link)
    assert link.is_symlink() and os.readlink(link) == os.path.join("data", "cache.bin")
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the replaced file's permissions
    for path in (link, real):
        loaded = SuffixCache(8)
        loaded.load(path)
        assert loaded.cached_requests == ["r"] and loaded.cached_tokens == 5
    assert leftovers(tmp_path) == [] and leftovers(real.parent) == []


def test_save_through_a_chain_of_symlinks_and_a_dangling_one(tmp_path: Path) -> None:
    target = tmp_path / "made-by-save.bin"
    (tmp_path / "b").symlink_to(target)  # dangling until the save creates the file
    (tmp_path / "a").symlink_to(tmp_path / "b")
    filled().save(tmp_path / "a")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
    assert target.is_file() and not target.is_symlink()
    loaded = SuffixCache(8)
    loaded.load(target)
    assert loaded.cached_requests == ["r"]


def test_save_through_a_symlink_to_a_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "cache.fifo"
    os.mkfifo(fifo)
    link = tmp_path / "cache.bin"
    link.symlink_to(fifo)
    with pytest.raises(CachePathError, match=r"symlink to .*FIFO"):
        filled().save(link)
    assert link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_save_into_a_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(CachePathError, match="No such file or directory"):
        filled().save(tmp_path / "missing" / "cache.bin")


# --- path types ---------------------------------------------------------------------------


def test_bytes_paths_are_file_names_not_their_repr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    name = os.fsencode(tmp_path) + b"/cache-\xff.bin"  # not valid UTF-8: taken as is
    filled().save(name)
    assert sorted(os.listdir(tmp_path)) == [os.fsdecode(b"cache-\xff.bin")]
    loaded = SuffixCache(8)
    loaded.load(name)
    assert loaded.cached_requests == ["r"]
    loaded.load(os.fsdecode(name))  # the str spelling of the same name


@pytest.mark.parametrize("path", ["a\0b", b"a\0b", Path("a\0b")], ids=["str", "bytes", "PathLike"])
def test_a_nul_in_the_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object
) -> None:
    monkeypatch.chdir(tmp_path)
    for call in (filled().save, SuffixCache(8).load):
        with pytest.raises(CachePathError, match="NUL") as err:
            call(path)  # type: ignore[arg-type]
        assert isinstance(err.value, ValueError) and repr(path) in str(err.value)
    assert os.listdir(tmp_path) == []  # "a" was not written


@pytest.mark.parametrize("path", ["", b"", Path("")], ids=["str", "bytes", "PathLike"])
def test_an_empty_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: object
) -> None:
    monkeypatch.chdir(tmp_path)
    for call in (filled().save, SuffixCache(8).load):
        with pytest.raises(CachePathError, match=r"directory|empty"):
            call(path)  # type: ignore[arg-type]
    assert os.listdir(tmp_path) == []


def test_a_non_path_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="int"):
        SuffixCache(8).save(3)  # type: ignore[arg-type]
