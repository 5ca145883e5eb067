"""Built-in workloads for the tiny target: agentic code edits and HumanEval, as token ids.

Every prompt comes from held-out data (files and tasks the model never trained on), so the
speed-ups measured on them are not memorisation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from corpus import EDIT, FILE, humaneval_tasks, stdlib_files
from edits import apply_edits


@dataclass(frozen=True)
class Request:
    """One generation request: prompt token ids and how many tokens to generate."""

    name: str
    prompt_ids: list[int]
    max_tokens: int


def _file_chunks(tokenizer, n: int, max_chunk_tokens: int, rng: random.Random) -> list[str]:
    chunks: list[str] = []
    files = stdlib_files("heldout")
    for f in rng.sample(files, len(files)):
        lines = [line for line in f.text.split("\n") if line.strip()]
        if len(lines) < 30:
            continue
        start = rng.randrange(0, len(lines) - 25)
        chunk = ""
        for line in lines[start:]:
            candidate = chunk + line + "\n"
            if len(tokenizer(candidate, add_special_tokens=False)["input_ids"]) > max_chunk_tokens:
                break
            chunk = candidate
        if chunk.count("\n") >= 8:
            chunks.append(chunk)
        if len(chunks) == n:
            break
    return chunks


def agentic_edit_requests(
    tokenizer, sessions: int = 3, turns: int = 3, max_chunk_tokens: int = 180, seed: int = 0
) -> list[Request]:
    """Multi-turn edit sessions: each turn the agent re-emits the file after a few edits.

    Turn ``t`` of a session prompts ``<|file|>{version t}<|edit|>``; the target continues by
    re-emitting the file, which is what makes agentic traffic copy-heavy.
    """
    rng = random.Random(seed)
    file_id, edit_id = tokenizer.convert_tokens_to_ids([FILE, EDIT])
    requests: list[Request] = []
    for s, text in enumerate(_file_chunks(tokenizer, sessions, max_chunk_tokens, rng)):
        version = text
        for t in range(turns):
            body = tokenizer(version, add_special_tokens=False)["input_ids"]
            requests.append(
                Request(f"edit-s{s}-t{t}", [file_id, *body, edit_id], max_tokens=len(body) + 8)
            )
            version = apply_edits(version, rng, rng.randint(1, 3))
    return requests


def humaneval_requests(tokenizer, n: int = 6, max_tokens: int = 96) -> list[Request]:
    """Held-out HumanEval prompts (signature + docstring); the target writes the body."""
    tasks = humaneval_tasks("heldout")[:n]
    return [
        Request(
            t.task_id,
            tokenizer(humaneval_prompt(t.prompt), add_special_tokens=False)["input_ids"],
            max_tokens,
        )
        for t in tasks
    ]


def humaneval_prompt(prompt: str) -> str:
    """HumanEval's prompt without its final newline.

    In training text a docstring's closing newline merges with the next line's indent into one
    BPE token; a prompt ending in a bare ``\n`` token is out of distribution and the tiny
    target answers it with end-of-text.
    """
    return prompt.rstrip("\n")


WORKLOADS = {
    "agentic-edit": agentic_edit_requests,
    "humaneval": humaneval_requests,
}


def build_workload(name: str, tokenizer, **kwargs) -> list[Request]:
    try:
        factory = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}") from None
    return factory(tokenizer, **kwargs)
