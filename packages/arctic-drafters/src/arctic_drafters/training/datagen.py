"""Stage 1: prompts from a local jsonl, and the target's own continuations as token shards.

As in ArcticTraining, the labels are what the *target* writes after real prompts, not the
dataset's text: a drafter is judged on agreeing with the target, so it is trained on it.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..exceptions import DatasetError
from .target import max_positions

MANIFEST = "manifest.json"


def _row_text(row: Any, tokenizer: Any, where: str) -> str:
    if isinstance(row, dict) and isinstance(row.get("text"), str):
        return str(row["text"])
    if isinstance(row, dict) and isinstance(row.get("messages"), list):
        messages = row["messages"]
        if not all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
            raise DatasetError(f"{where}: every message needs a string 'content'")
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(m["content"] for m in messages)
    raise DatasetError(f"{where}: a row must be {{'text': str}} or {{'messages': [...]}}")


def load_prompts(
    path: str | os.PathLike[str], tokenizer: Any, prompt_len: int, max_prompts: int | None = None
) -> list[list[int]]:
    """Token-id prompts of exactly ``prompt_len`` tokens: each row is cut into consecutive
    chunks (ArcticTraining uses 64-token chunks); a shorter tail is dropped.

    An empty row is an error naming its line; so is a file that yields no prompt at all.
    """
    if prompt_len <= 0:
        raise ValueError(f"prompt_len must be positive, got {prompt_len}")
    if max_prompts is not None and max_prompts <= 0:
        raise ValueError(f"max_prompts must be positive or None, got {max_prompts}")
    prompts: list[list[int]] = []
    rows = 0
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{where}: not JSON ({exc})") from exc
            text = _row_text(row, tokenizer, where)
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
            f"{path}: no usable prompt ({rows} rows, none with >= {prompt_len} tokens)"
        )
    return prompts


@dataclass(frozen=True)
class TokenShards:
    tokens: torch.Tensor  # (N, prompt_len + gen_len) int64: prompt then target continuation
    prompt_len: int
    vocab_size: int


def generate_shards(
    model: Any,
    prompts: list[list[int]],
    out_dir: str | os.PathLike[str],
    gen_len: int,
    batch_size: int = 32,
    shard_size: int = 512,
    temperature: float = 1.0,
    top_k: int = 10,
    seed: int = 0,
) -> Path:
    """Write ``shard-NNNNN.safetensors`` files of prompt + continuation tokens.

    ``temperature=0`` is greedy (what evaluation compares against), ``top_k=0`` samples
    without top-k filtering. Finished shards are kept when rerun (each shard has its own
    seed), so an interrupted run resumes where it stopped. Arguments are checked before
    anything is written.
    """
    for name, value in (
        ("gen_len", gen_len),
        ("batch_size", batch_size),
        ("shard_size", shard_size),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0: no top-k filtering), got {top_k!r}")
    if (
        not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not prompts:
        raise DatasetError("no prompts to generate from")
    prompt_len = len(prompts[0])
    if prompt_len == 0 or any(len(p) != prompt_len for p in prompts):
        raise DatasetError("prompts must be non-empty and all of one length")
    limit = max_positions(model)
    if limit is not None and prompt_len + gen_len > limit:
        raise DatasetError(
            f"prompt_len {prompt_len} + gen_len {gen_len} > the target's "
            f"max_position_embeddings {limit}; shorten them"
        )
    vocab = int(model.config.vocab_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "vocab_size": vocab,
        "temperature": temperature,
        "top_k": top_k,
        "seed": seed,
        "num_sequences": len(prompts),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    n_shards = (len(prompts) + shard_size - 1) // shard_size
    bar = tqdm(total=len(prompts), desc="generate", unit="seq")
    for s in range(n_shards):
        chunk = prompts[s * shard_size : (s + 1) * shard_size]
        path = out / f"shard-{s:05d}.safetensors"
        if path.exists():
            bar.update(len(chunk))
            continue
        torch.manual_seed(seed * 100_003 + s)
        rows = []
        for b in range(0, len(chunk), batch_size):
            ids = torch.tensor(chunk[b : b + batch_size], dtype=torch.long)
            with torch.no_grad():
                seqs = model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=gen_len,
                    min_new_tokens=gen_len,  # equal lengths: static shapes downstream
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_k=top_k if temperature > 0 else None,
                    top_p=None,
                    pad_token_id=model.config.pad_token_id or 0,
                )
            rows.append(seqs.to(torch.int32))
            bar.update(ids.shape[0])
        tmp = path.with_suffix(".tmp")
        save_file({"tokens": torch.cat(rows)}, str(tmp))
        os.replace(tmp, path)
    bar.close()
    return out


def read_shards(data_dir: str | os.PathLike[str]) -> TokenShards:
    root = Path(data_dir)
    if not (root / MANIFEST).is_file():
        raise DatasetError(f"{root} has no {MANIFEST}; run the generate stage first")
    manifest = json.loads((root / MANIFEST).read_text())
    files = sorted(root.glob("shard-*.safetensors"))
    if not files:
        raise DatasetError(f"{root} holds no token shards")
    tokens = torch.cat([load_file(str(f))["tokens"] for f in files]).long()
    if tokens.shape[0] == 0:
        raise DatasetError(f"{root}: the shards hold no sequences")
    return TokenShards(tokens, int(manifest["prompt_len"]), int(manifest["vocab_size"]))
