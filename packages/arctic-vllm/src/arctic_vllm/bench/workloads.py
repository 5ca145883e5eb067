"""Built-in workloads: agentic code edits, HumanEval and English prose, as token ids.

Every prompt comes from data the bundled tiny target never trained on (the held-out split of
``corpus``), so the speed-ups measured on them are not memorisation. They work with any
tokenizer; one without the tiny target's ``<|file|>`` / ``<|edit|>`` tokens gets the markers
as plain text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .corpus import EDIT, FILE, MAX_FILE_BYTES, humaneval_tasks, stdlib_files, stdlib_root
from .edits import apply_edits


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


def _marker_ids(tokenizer, marker: str) -> list[int]:
    """``marker``'s one id where it is a token of ``tokenizer`` (the tiny target's special
    tokens), else its plain-text encoding."""
    ids = tokenizer.convert_tokens_to_ids([marker])
    if ids[0] is not None and ids[0] != tokenizer.unk_token_id:
        return ids
    return tokenizer(marker, add_special_tokens=False)["input_ids"]


def agentic_edit_requests(
    tokenizer, sessions: int = 3, turns: int = 3, max_chunk_tokens: int = 180, seed: int = 0
) -> list[Request]:
    """Multi-turn edit sessions: each turn the agent re-emits the file after a few edits.

    Turn ``t`` of a session prompts ``<|file|>{version t}<|edit|>``; the target continues by
    re-emitting the file, which is what makes agentic traffic copy-heavy.
    """
    rng = random.Random(seed)
    file_ids, edit_ids = _marker_ids(tokenizer, FILE), _marker_ids(tokenizer, EDIT)
    requests: list[Request] = []
    for s, text in enumerate(_file_chunks(tokenizer, sessions, max_chunk_tokens, rng)):
        version = text
        for t in range(turns):
            body = tokenizer(version, add_special_tokens=False)["input_ids"]
            requests.append(
                Request(f"edit-s{s}-t{t}", [*file_ids, *body, *edit_ids], max_tokens=len(body) + 8)
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


def prose_requests(
    tokenizer, n: int = 6, prompt_tokens: int = 128, max_tokens: int = 96, seed: int = 0
) -> list[Request]:
    """English prose: topics of the Python reference manual (the stdlib's
    ``pydoc_data/topics.py``, what ``help("if")`` prints), cut at a line end.

    Never trained on: the file is larger than ``MAX_FILE_BYTES``, so the corpus skips it
    (checked below); short phrases may still recur in trained docstrings. Prose is outside the
    code-trained target's domain; the bundled tiny target soon falls into repeating ``"\\n#"``
    on it (greedy), so what speculation gains here is mostly that repetition.
    """
    if (stdlib_root() / "pydoc_data" / "topics.py").stat().st_size <= MAX_FILE_BYTES:
        raise RuntimeError("pydoc_data/topics.py is in the training corpus here; not held out")
    from pydoc_data.topics import topics

    rng = random.Random(seed)
    names = rng.sample(sorted(t for t in topics if len(topics[t]) > 8 * prompt_tokens), n)
    requests = []
    for name in names:
        text = topics[name][: 8 * prompt_tokens]  # enough characters for prompt_tokens
        head = tokenizer.decode(
            tokenizer(text, add_special_tokens=False)["input_ids"][:prompt_tokens]
        )
        prompt = head[: head.rfind("\n")].rstrip()  # see humaneval_prompt on trailing "\n"
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        requests.append(Request(f"prose-{name}", ids, max_tokens))
    return requests


WORKLOADS = {
    "agentic-edit": agentic_edit_requests,
    "humaneval": humaneval_requests,
    "prose": prose_requests,
}


def build_workload(name: str, tokenizer, **kwargs) -> list[Request]:
    try:
        factory = WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown workload {name!r}; choose from {sorted(WORKLOADS)}") from None
    return factory(tokenizer, **kwargs)
