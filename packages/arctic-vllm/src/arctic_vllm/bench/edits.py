"""Small, realistic edits of Python source, as an agent makes them between two turns.

Used twice: the target model's recipe trains on (file, edited file) pairs so that it learns
to copy, and the agentic-edit workload re-emits a file with a few edits per turn.
"""

from __future__ import annotations

import random
import re

_IDENT = re.compile(r"\b[a-z_][a-z0-9_]{2,}\b")
_NUMBER = re.compile(r"\b\d+\b")


def _rename(lines: list[str], rng: random.Random) -> None:
    names = sorted({m.group(0) for line in lines for m in _IDENT.finditer(line)})
    if not names:
        return
    old = rng.choice(names)
    new = old + rng.choice(["_new", "_v2", "_tmp", "s", "_list", "_count"])
    pattern = re.compile(rf"\b{re.escape(old)}\b")
    for i, line in enumerate(lines):
        lines[i] = pattern.sub(new, line)


def _renumber(lines: list[str], rng: random.Random) -> None:
    candidates = [i for i, line in enumerate(lines) if _NUMBER.search(line)]
    if not candidates:
        return
    i = rng.choice(candidates)
    lines[i] = _NUMBER.sub(lambda m: str(int(m.group(0)) + rng.randint(1, 9)), lines[i], count=1)


def _delete_line(lines: list[str], rng: random.Random) -> None:
    if len(lines) > 3:
        del lines[rng.randrange(1, len(lines))]


def _duplicate_line(lines: list[str], rng: random.Random) -> None:
    if lines:
        i = rng.randrange(len(lines))
        lines.insert(i + 1, lines[i])


def _insert_statement(lines: list[str], rng: random.Random) -> None:
    if not lines:
        return
    i = rng.randrange(len(lines))
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    stmt = rng.choice(
        [
            "assert result is not None",
            "logger.debug('checkpoint')",
            "count += 1",
            "return None",
            "pass",
        ]
    )
    lines.insert(i + 1, indent + stmt)


_EDITS = (_rename, _renumber, _delete_line, _duplicate_line, _insert_statement)


def apply_edits(text: str, rng: random.Random, n_edits: int) -> str:
    """Return ``text`` with ``n_edits`` random line-level edits (rename, renumber, ...)."""
    if n_edits < 0:
        raise ValueError(f"n_edits must be >= 0, got {n_edits}")
    lines = text.split("\n")
    for _ in range(n_edits):
        rng.choice(_EDITS)(lines, rng)
    return "\n".join(lines)
