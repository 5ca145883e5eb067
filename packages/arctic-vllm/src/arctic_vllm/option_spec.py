"""How an option of ``speculative_config`` is declared: once, with its type, range, names and
help, on the ArcticOptions field it sets (dataclass field metadata). Parsing and validation
read these declarations; nothing else lists the options.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from dataclasses import dataclass
from typing import Any

from .exceptions import ArcticConfigError

KINDS = ("bool", "int", "float", "str", "path", "schedule")


@dataclass(frozen=True)
class OptionSpec:
    kind: str  # one of KINDS
    names: tuple[str, ...]  # what users write: the first is the documented name, then aliases
    help: str  # one line, the README's "meaning"
    low: float | None = None  # int / float: the smallest valid value
    high: float | None = None  # int / float: the largest valid value
    choices: tuple[str, ...] = ()  # str: the valid values
    nullable: bool = False  # None is a valid value (meaning: auto / measured / no cap)
    drafter_only: bool = False  # only method "arctic" (a drafter) reads it

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert self.names, "an option needs a name"

    def check(self, key: str, value: Any) -> Any:
        """The value if valid for this option (a path comes back as str), else an
        ArcticConfigError naming ``key`` (the name the user wrote) and the value."""
        if value is None and self.nullable:
            return None
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            raise _bad(key, "must be true or false", value)
        if self.kind == "path":
            if isinstance(value, str | os.PathLike):
                return os.fspath(value)
            raise _bad(key, "must be a path (a directory)", value)
        if self.kind == "schedule":
            return _schedule(key, value)
        if self.kind == "str":
            if isinstance(value, str) and value in self.choices:
                return value
            if len(self.choices) == 2:
                raise _bad(key, "must be {!r} or {!r}".format(*self.choices), value)
            raise _bad(key, f"must be one of {self.choices}", value)
        number = (int,) if self.kind == "int" else (int, float)
        if isinstance(value, bool) or not isinstance(value, number):
            raise _bad(
                key, f"must be {'an int' if self.kind == 'int' else 'a number'} {self.span}", value
            )
        if (self.low is not None and value < self.low) or (
            self.high is not None and value > self.high
        ):
            raise _bad(
                key, f"must be {'an int' if self.kind == 'int' else 'a number'} {self.span}", value
            )
        return value

    @property
    def span(self) -> str:
        def show(x: float | None) -> str:
            return str(int(x)) if self.kind == "int" and x is not None else str(x)

        if self.low is not None and self.high is not None:
            if self.kind == "int":
                return f"in {show(self.low)}..{show(self.high)}"
            return f"in [{self.low}, {self.high}]"
        if self.low is not None:
            return f">= {show(self.low)}"
        return f"<= {show(self.high)}" if self.high is not None else ""


def _schedule(key: str, value: Any) -> tuple[tuple[int, int, int], ...]:
    """vLLM 0.33's num_speculative_tokens_per_batch_size, checked as vLLM checks it: inclusive
    (first, last, K) batch-size ranges, positive, non-overlapping, the first from 1, K >= 0."""
    what = "must be a list of [first_batch_size, last_batch_size, num_tokens] ranges"
    if not isinstance(value, list | tuple) or not value:
        raise _bad(key, what, value)
    ranges = []
    for entry in value:
        if (
            not isinstance(entry, list | tuple)
            or len(entry) != 3
            or any(isinstance(x, bool) or not isinstance(x, int) for x in entry)
        ):
            raise _bad(key, what, value)
        first, last, tokens = entry
        if not 1 <= first <= last or tokens < 0:
            raise _bad(key, f"{what}, with 1 <= first <= last and num_tokens >= 0", value)
        ranges.append((first, last, tokens))
    ranges.sort()
    if ranges[0][0] != 1:
        raise _bad(key, f"{what}; the first range must start at batch size 1", value)
    for (_, last, _), (first, _, _) in itertools.pairwise(ranges):
        if first <= last:
            raise _bad(key, f"{what}; the ranges overlap", value)
    return tuple(ranges)


def _bad(key: str, what: str, value: Any) -> ArcticConfigError:
    return ArcticConfigError(f"speculative_config[{key!r}] {what}, got {value!r}")


def option(default: Any, spec: OptionSpec) -> Any:
    """A dataclass field carrying its declaration."""
    return dataclasses.field(default=default, metadata={"option": spec})


def declared(cls: type) -> dict[str, OptionSpec]:
    """field name -> its OptionSpec, for every declared option of a dataclass."""
    return {f.name: f.metadata["option"] for f in dataclasses.fields(cls) if "option" in f.metadata}


def render_default(value: Any) -> str:
    """A default as the README's option table writes it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return str([list(r) for r in value])
    return str(value)
