"""Token shards on disk: what stage 1 writes and stage 2 reads.

A data directory holds ``manifest.json`` and ``shard-NNNNN.safetensors`` files. Shard ``s``
holds the sequences of prompts ``s * shard_size ...`` (prompt then the target's
continuation), written whole or not at all (temp file + rename), so a crashed run is resumed
by writing the missing shards; the manifest's ``fingerprint`` (of the prompts and every
generation setting) makes a rerun with other prompts or settings fail instead of mixing.

Format 2 (ragged): ``tokens`` (total,) int32 flat, ``offsets`` (rows + 1,) int64,
``prompt_lens`` (rows,) int32. Format 1 (the first release): ``tokens`` (rows, T) with one
``prompt_len`` in the manifest; still read.

``SequenceStore`` reads sequences lazily (a batch at a time, from the memory-mapped files),
so training memory does not grow with the dataset; ``read_shards`` loads fixed-length data
whole into a ``TokenShards`` for the in-memory tools (``evaluate_acceptance``, ``quantize``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..exceptions import DatasetError

MANIFEST = "manifest.json"
FORMAT = "arctic-drafters-shards"
FORMAT_VERSION = 2
OPEN_SHARDS = 32  # file handles kept open by a SequenceStore (each is an mmap)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.safetensors"


def fingerprint(prompts: list[list[int]], settings: dict[str, Any]) -> str:
    """sha256 of the prompt ids and the settings that shape the output."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for prompt in prompts:
        digest.update(torch.tensor(prompt, dtype=torch.int64).numpy().tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` unless one is there; an existing one must be the same run's."""
    path = out / MANIFEST
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("fingerprint") != manifest["fingerprint"]:
            raise DatasetError(
                f"{out} holds data of another run (other prompts or generation settings); "
                "use another --out or delete it"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # data parallel workers write it too
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path)


def write_shard(path: Path, prompts: list[list[int]], continuations: list[list[int]]) -> None:
    rows = [p + c for p, c in zip(prompts, continuations, strict=True)]
    lengths = torch.tensor([0] + [len(r) for r in rows], dtype=torch.int64)
    flat = [t for r in rows for t in r]
    tensors = {
        "tokens": torch.tensor(flat, dtype=torch.int32),
        "offsets": lengths.cumsum(0),
        "prompt_lens": torch.tensor([len(p) for p in prompts], dtype=torch.int32),
    }
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, path)  # a crash leaves the shard absent, never half-written


def read_manifest(root: Path) -> dict[str, Any]:
    if not (root / MANIFEST).is_file():
        raise DatasetError(f"{root} has no {MANIFEST}; run the generate stage first")
    manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text())
    return manifest


def shard_files(root: Path, manifest: dict[str, Any]) -> list[Path]:
    files = sorted(root.glob("shard-*.safetensors"))
    if not files:
        raise DatasetError(f"{root} holds no token shards")
    expected = manifest.get("num_shards")
    if expected is not None and len(files) != expected:
        missing = sorted({shard_name(s) for s in range(expected)} - {f.name for f in files})
        raise DatasetError(
            f"{root}: {len(files)} of {expected} shards (missing {missing[:3]}...); rerun "
            "generate with the same arguments to finish it"
        )
    return files


@dataclass(frozen=True)
class TokenShards:
    tokens: torch.Tensor  # (N, prompt_len + gen_len) int64: prompt then target continuation
    prompt_len: int
    vocab_size: int


@dataclass(frozen=True)
class SequenceBatch:
    tokens: torch.Tensor  # (B, T) int64, right-padded with 0 past each length
    lengths: torch.Tensor  # (B,) int64
    prompt_lens: torch.Tensor  # (B,) int64

    @property
    def attention_mask(self) -> torch.Tensor:  # (B, T) 1 on real tokens
        positions = torch.arange(self.tokens.shape[1])
        return (positions[None, :] < self.lengths[:, None]).long()


class SequenceStore:
    """Lazy, random access to the sequences of a data directory (both formats).

    Only the per-sequence lengths (two ints each) are held in memory; tokens are read from
    the memory-mapped shards a batch at a time."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.root = Path(data_dir)
        self.manifest = read_manifest(self.root)
        self.vocab_size = int(self.manifest["vocab_size"])
        self.files = shard_files(self.root, self.manifest)
        self._handles: OrderedDict[int, Any] = OrderedDict()
        starts, lengths, prompt_lens, shard_of, row_of = [], [], [], [], []
        for s, path in enumerate(self.files):
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                if "offsets" in keys:
                    offsets = f.get_tensor("offsets").long()
                    plens = f.get_tensor("prompt_lens").long()
                else:  # format 1: (rows, T)
                    rows, width = f.get_slice("tokens").get_shape()
                    offsets = torch.arange(rows + 1, dtype=torch.int64) * width
                    plens = torch.full((rows,), int(self.manifest["prompt_len"]))
            rows = len(plens)
            starts.append(offsets[:-1])
            lengths.append(offsets[1:] - offsets[:-1])
            prompt_lens.append(plens)
            shard_of.append(torch.full((rows,), s, dtype=torch.int64))
            row_of.append(torch.arange(rows))
        self.lengths = torch.cat(lengths)
        self.prompt_lens = torch.cat(prompt_lens)
        self._starts = torch.cat(starts)
        self._shard = torch.cat(shard_of)
        self._ragged = "offsets" in keys
        if len(self.lengths) == 0:
            raise DatasetError(f"{self.root}: the shards hold no sequences")

    def __len__(self) -> int:
        return len(self.lengths)

    def _handle(self, shard: int) -> Any:
        if shard in self._handles:
            self._handles.move_to_end(shard)
            return self._handles[shard]
        handle = safe_open(str(self.files[shard]), framework="pt")
        self._handles[shard] = handle
        if len(self._handles) > OPEN_SHARDS:
            self._handles.popitem(last=False)
        return handle

    def sequence(self, index: int) -> torch.Tensor:
        shard, start = int(self._shard[index]), int(self._starts[index])
        length = int(self.lengths[index])
        tokens = self._handle(shard).get_slice("tokens")
        if self._ragged:
            seq: torch.Tensor = tokens[start : start + length]
        else:  # format 1: row start // length of a (rows, length) tensor
            row = start // length
            seq = tokens[row : row + 1].reshape(-1)
        return seq.long()

    def batch(self, indices: torch.Tensor | list[int]) -> SequenceBatch:
        indices = torch.as_tensor(indices, dtype=torch.int64)
        lengths = self.lengths[indices]
        tokens = torch.zeros(len(indices), int(lengths.max()), dtype=torch.int64)
        for row, index in enumerate(indices.tolist()):
            seq = self.sequence(index)
            tokens[row, : len(seq)] = seq
        return SequenceBatch(tokens, lengths, self.prompt_lens[indices])


def read_shards(data_dir: str | os.PathLike[str]) -> TokenShards:
    """Every sequence in memory, as one (N, T) tensor: fixed-length data only (chunked
    prompts; chat data has ragged rows and is read with ``SequenceStore``)."""
    store = SequenceStore(data_dir)
    if bool((store.lengths != store.lengths[0]).any()) or bool(
        (store.prompt_lens != store.prompt_lens[0]).any()
    ):
        raise DatasetError(
            f"{data_dir}: sequences of different lengths (chat data); this step needs "
            "fixed-length data (chunked prompts), or train / evaluate without --cache"
        )
    width = int(store.lengths[0])
    tokens = torch.cat([load_file(str(f))["tokens"].reshape(-1, width) for f in store.files])
    return TokenShards(tokens.long(), int(store.prompt_lens[0]), store.vocab_size)
