"""Damaged checkpoint files fail as CheckpointError naming the file and what is wrong, with
the reader's own error chained; never as safetensors', pickle's or the codec's exceptions."""

from __future__ import annotations

import io
import json
import random
import re

import pytest
import torch
from anchor_checkpoints import ibm_mlp, vllm_config, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arctic_drafters import CheckpointError, MLPSpeculatorConfig, build_speculator, load_drafter
from arctic_drafters import save_drafter as save


@pytest.fixture
def native(tmp_path):
    return save(build_speculator(MLPSpeculatorConfig(50, 8, 6)), tmp_path / "d")


def _raises_naming(path, *fragments: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_drafter(path.parent)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert re.search(fragment, message), (fragment, message)
    return info.value


def _good_safetensors(native) -> bytes:
    return (native / "model.safetensors").read_bytes()


def _header_length(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little")


def _damaged(blob: bytes, how: str) -> bytes:
    n = _header_length(blob)
    if how == "empty":
        return b""
    if how == "truncated-in-length":
        return blob[:5]
    if how == "truncated-in-header":
        return blob[: 8 + n // 2]
    if how == "truncated-in-data":
        return blob[: len(blob) - 7]
    if how == "padded":
        return blob + b"\0" * 16
    if how == "length-bit-flipped":
        return bytes([blob[0], blob[1], blob[2], blob[3] ^ 0x40]) + blob[4:]
    if how == "header-bit-flipped":  # the opening brace of the JSON header
        return blob[:8] + bytes([blob[8] ^ 0x01]) + blob[9:]
    if how == "random":
        return random.Random(0).randbytes(len(blob))
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "empty",
        "truncated-in-length",
        "truncated-in-header",
        "truncated-in-data",
        "padded",
        "length-bit-flipped",
        "header-bit-flipped",
        "random",
    ],
)
@pytest.mark.parametrize("layout", ["native", "import"])
def test_damaged_safetensors_is_a_checkpoint_error(tmp_path, native, how, layout):
    if layout == "native":
        path = native / "model.safetensors"
    else:
        path = write(tmp_path / "imp", vllm_config(False, False), ibm_mlp(False), "safetensors")
        path = path / "model.safetensors"
    path.write_bytes(_damaged(path.read_bytes(), how))
    error = _raises_naming(path, "not a readable safetensors file", "truncated or corrupt")
    assert type(error.__cause__).__name__ == "SafetensorError"  # chained, not swallowed


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_damage_loads_or_is_a_checkpoint_error(native, data):
    """Bit flips anywhere and truncation at any length: the load either succeeds (a flip in
    tensor data that keeps every value finite; safetensors has no checksum) or raises
    CheckpointError, never anything else."""
    good = _good_safetensors(native)
    blob = bytearray(good)
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(good) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            i = data.draw(st.integers(0, len(good) - 1), label="byte")
            blob[i] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    (native / "model.safetensors").write_bytes(bytes(blob))
    try:
        load_drafter(native)
    except CheckpointError as exc:
        assert str(native / "model.safetensors") in str(exc)
    finally:
        (native / "model.safetensors").write_bytes(good)


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"\xff\xfe{\x00}\x00", [r"not UTF-8 text \(byte 0: b'\\xff'\)"]),
        (b'{"format": "arctic-drafters", "kind": "ml\xe9"}', ["not UTF-8 text"]),
        (b"{", ["not valid JSON"]),
        (b"", ["not valid JSON"]),
        (b"[1, 2]", ["must hold a JSON object, got a list"]),
        (b'"mlp"', ["must hold a JSON object, got a str"]),
        (b"null", ["must hold a JSON object, got a NoneType"]),
        (b"[" * 100_000, ["not valid JSON"]),  # nesting deeper than the parser's recursion
    ],
)
def test_bad_config_json_bytes(native, content, fragments):
    (native / "config.json").write_bytes(content)
    _raises_naming(native / "config.json", *fragments)


def test_non_utf8_config_chains_the_decode_error(native):
    (native / "config.json").write_bytes(b"\xff")
    error = _raises_naming(native / "config.json", "not UTF-8")
    assert isinstance(error.__cause__, UnicodeDecodeError)


def _bin_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


GOOD_BIN = _bin_bytes(ibm_mlp(False))


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"", [r"not a readable torch.save file \(EOFError\)", "truncated or corrupt"]),
        (GOOD_BIN[: len(GOOD_BIN) // 2], ["not a readable torch.save file", "corrupt"]),
        (random.Random(1).randbytes(600), ["corrupt"]),
        (_bin_bytes([torch.zeros(2)]), ["holds a list, not a state dict of tensors"]),
        (_bin_bytes({"emb.0.weight": 3}), [r"entries \['emb.0.weight'\] are not named tensors"]),
    ],
    ids=["empty", "truncated", "random", "a-list", "not-a-tensor"],
)
def test_corrupt_pytorch_model_bin(tmp_path, content, fragments):
    root = write(tmp_path / "imp", vllm_config(False, False), ibm_mlp(False), "bin")
    (root / "pytorch_model.bin").write_bytes(content)
    _raises_naming(root / "pytorch_model.bin", *fragments)


def test_a_valid_checkpoint_still_round_trips_after_the_checks(native):
    loaded = load_drafter(native)
    assert json.loads((native / "config.json").read_text())["vocab_size"] == 50
    assert loaded.head[0].weight.shape == (50, 6) and not loaded.head[0].weight.is_meta
