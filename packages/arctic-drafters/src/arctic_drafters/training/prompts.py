"""Prompts from the user's data: local jsonl / json / parquet / arrow files or a Hugging Face
dataset name (through the ``datasets`` library), as token ids for the target.

Two shapes, as in ArcticTraining's data generation:

- **chunks** (``load_prompts``): every row's text is cut into ``prompt_len``-token chunks
  (ArcticTraining uses 64) that the target continues; all prompts have one length.
- **chat** (``load_chat_prompts``): each conversation up to its last user turn, rendered by the
  target's chat template with the generation prompt appended, so the target writes the
  assistant's answer itself. Prompt lengths vary.

A row is ``{"text": str}``, ``{"messages": [{"role", "content"}, ...]}`` or ShareGPT's
``{"conversations": [{"from", "value"}, ...]}``; ``text_field`` names another text column.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..exceptions import DatasetError

DATASETS_HINT = 'pip install "arctic-drafters[data]"'
TABLE_SUFFIXES = (".parquet", ".arrow")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(
            f"parquet / arrow files and Hugging Face dataset names are read with the "
            f"`datasets` library: {DATASETS_HINT} (jsonl files need nothing)"
        ) from exc
    return datasets


def iter_rows(source: str | os.PathLike[str], split: str = "train") -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for every row of ``source``; ``where`` names the file and line (or the
    dataset and index) for error messages. A directory, or a name that is no path, goes to
    ``datasets.load_dataset`` (a Hugging Face dataset name or a local folder of data files;
    ``split`` is used there only)."""
    path = Path(source)
    name = path.name.lower()
    if path.is_file() and not name.endswith(TABLE_SUFFIXES):  # JSON lines, whatever the suffix
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for line_no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{source}:{line_no}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{where}: not JSON ({exc})") from exc
        return
    if path.is_file() and name.endswith(TABLE_SUFFIXES):
        kind = "parquet" if name.endswith(".parquet") else "arrow"
        table = _datasets().load_dataset(kind, data_files=str(path), split="train")
    else:  # a dataset name on the Hub, or a local directory of data files / a Hub snapshot
        table = _datasets().load_dataset(str(source), split=split)
    for index, row in enumerate(table):
        yield f"{source}[{index}]", row


def _messages(row: Any, where: str) -> list[dict[str, str]] | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("messages"), list):
        messages = row["messages"]
        if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
            raise DatasetError(f"{where}: every message needs a string 'content'")
        return [{"role": str(m.get("role", "user")), "content": m["content"]} for m in messages]
    if isinstance(row.get("conversations"), list):
        turns = row["conversations"]
        if not all(isinstance(t, dict) and isinstance(t.get("value"), str) for t in turns):
            raise DatasetError(f"{where}: every conversation turn needs a string 'value'")
        return [
            {
                "role": SHAREGPT_ROLES.get(str(t.get("from")), str(t.get("from"))),
                "content": t["value"],
            }
            for t in turns
        ]
    return None


def _row_text(row: Any, tokenizer: Any, where: str, text_field: str = "text") -> str:
    if isinstance(row, dict) and isinstance(row.get(text_field), str):
        return str(row[text_field])
    messages = _messages(row, where)
    if messages is not None:
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(m["content"] for m in messages)
    raise DatasetError(
        f"{where}: a row must be {{'{text_field}': str}}, {{'messages': [...]}} or "
        "{'conversations': [...]}"
    )


def _check_limit(max_prompts: int | None) -> None:
    if max_prompts is not None and max_prompts <= 0:
        raise ValueError(f"max_prompts must be positive or None, got {max_prompts}")


def load_prompts(
    source: str | os.PathLike[str],
    tokenizer: Any,
    prompt_len: int,
    max_prompts: int | None = None,
    *,
    split: str = "train",
    text_field: str = "text",
) -> list[list[int]]:
    """Token-id prompts of exactly ``prompt_len`` tokens: each row is cut into consecutive
    chunks (ArcticTraining uses 64-token chunks); a shorter tail is dropped.

    An empty row is an error naming its line; so is a source that yields no prompt at all.
    """
    if prompt_len <= 0:
        raise ValueError(f"prompt_len must be positive, got {prompt_len}")
    _check_limit(max_prompts)
    prompts: list[list[int]] = []
    rows = 0
    for where, row in iter_rows(source, split):
        text = _row_text(row, tokenizer, where, text_field)
        if not text.strip():
            raise DatasetError(f"{where}: empty prompt; remove the row")
        rows += 1
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids) - prompt_len + 1, prompt_len):
            prompts.append(list(ids[start : start + prompt_len]))
            if max_prompts is not None and len(prompts) >= max_prompts:
                return prompts
    if not prompts:
        raise DatasetError(
            f"{source}: no usable prompt ({rows} rows, none with >= {prompt_len} tokens)"
        )
    return prompts


def _chat_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
    if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 may return a BatchEncoding
        ids = ids["input_ids"]
    return [int(i) for i in ids]


def load_chat_prompts(
    source: str | os.PathLike[str],
    tokenizer: Any,
    max_prompt_len: int,
    max_prompts: int | None = None,
    *,
    split: str = "train",
    text_field: str = "text",
) -> list[list[int]]:
    """One prompt per conversation: its turns up to (not including) the last assistant turn,
    through the target's chat template with the generation prompt, so the answer is the
    target's own (a text row is one user turn). Prompts over ``max_prompt_len`` tokens are
    skipped (their number is in the error if none is left)."""
    if max_prompt_len <= 0:
        raise ValueError(f"max_prompt_len must be positive, got {max_prompt_len}")
    _check_limit(max_prompts)
    if not getattr(tokenizer, "chat_template", None):
        raise DatasetError(
            "the target's tokenizer has no chat template; use chunked prompts (no --chat) or "
            "give the tokenizer one"
        )
    prompts: list[list[int]] = []
    rows = too_long = 0
    for where, row in iter_rows(source, split):
        messages = _messages(row, where)
        if messages is None:
            text = _row_text(row, tokenizer, where, text_field)
            messages = [{"role": "user", "content": text}]
        while messages and messages[-1]["role"] == "assistant":
            messages = messages[:-1]  # the answer is regenerated by the target
        if not messages or not any(m["content"].strip() for m in messages):
            raise DatasetError(f"{where}: empty conversation; remove the row")
        rows += 1
        ids = _chat_ids(tokenizer, messages)
        if len(ids) > max_prompt_len:
            too_long += 1
            continue
        prompts.append(ids)
        if max_prompts is not None and len(prompts) >= max_prompts:
            return prompts
    if not prompts:
        raise DatasetError(
            f"{source}: no usable conversation ({rows} rows, {too_long} longer than "
            f"max_prompt_len {max_prompt_len})"
        )
    return prompts
