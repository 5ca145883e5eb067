"""Stage 1 without vLLM: resumable, fingerprinted shards; chat prompts; the lazy store.

(vLLM's engine is tested through real vLLM in integration_tests/test_vllm_datagen.py.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_target import CharTokenizer, random_prompts, tiny_llama

from arctic_drafters import DatasetError
from arctic_drafters.training import (
    SequenceStore,
    TransformersEngine,
    generate_shards,
    iter_rows,
    load_chat_prompts,
    load_prompts,
    read_shards,
)


@pytest.fixture(scope="module")
def target():
    return tiny_llama()


def _shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*.safetensors"))}


SAMPLED = {"gen_len": 6, "shard_size": 3, "temperature": 1.0, "top_k": 5, "seed": 7}


def test_a_crashed_run_resumes_to_the_same_shards(tmp_path, target):
    prompts = random_prompts(10)
    generate_shards(target, prompts, tmp_path / "straight", progress=False, **SAMPLED)

    class Crash(Exception):
        pass

    def crash_after_shard_1(s):
        if s == 1:
            raise Crash

    with pytest.raises(Crash):
        generate_shards(
            target,
            prompts,
            tmp_path / "crashed",
            on_shard=crash_after_shard_1,
            progress=False,
            **SAMPLED,
        )
    assert sorted(_shard_bytes(tmp_path / "crashed")) == [
        "shard-00000.safetensors",
        "shard-00001.safetensors",
    ]
    with pytest.raises(DatasetError, match=r"2 of 4 shards \(missing"):
        SequenceStore(tmp_path / "crashed")  # an unfinished directory is not read as data
    written = []
    generate_shards(
        target, prompts, tmp_path / "crashed", on_shard=written.append, progress=False, **SAMPLED
    )
    assert written == [2, 3]  # only the missing shards
    assert _shard_bytes(tmp_path / "crashed") == _shard_bytes(tmp_path / "straight")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from tiny_target import random_prompts, tiny_llama
    from arctic_drafters.training import generate_shards
    prompts = random_prompts(12)
    def slow(s):
        time.sleep(0.5 if s == 0 else 30)  # killed during shard 1's pause
    torch.set_num_threads(1)
    generate_shards(tiny_llama(), prompts, sys.argv[1], gen_len=6, shard_size=4,
                    temperature=1.0, top_k=5, seed=7, on_shard=slow, progress=False)
    """
)


def test_a_killed_process_resumes_to_the_same_shards(tmp_path, target):
    """SIGKILL mid-run, in the middle of a shard's life: a fresh process finishes the job."""
    script = tmp_path / "gen.py"
    script.write_text(KILL_SCRIPT.format(tests=str(Path(__file__).parent)))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    deadline = time.monotonic() + 120
    while not (out / "shard-00001.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "generation did not start"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(_shard_bytes(out)) == 2
    prompts = random_prompts(12)
    args = {"gen_len": 6, "shard_size": 4, "temperature": 1.0, "top_k": 5, "seed": 7}
    generate_shards(target, prompts, out, progress=False, **args)
    generate_shards(target, prompts, tmp_path / "straight", progress=False, **args)
    assert _shard_bytes(out) == _shard_bytes(tmp_path / "straight")


def test_workers_share_the_shards_of_one_run(tmp_path, target):
    prompts = random_prompts(10)
    for k in (1, 0):  # worker 1 first: each writes its own shards, any order
        generate_shards(
            target,
            prompts,
            tmp_path / "dp",
            worker_index=k,
            num_workers=2,
            progress=False,
            **SAMPLED,
        )
    generate_shards(target, prompts, tmp_path / "one", progress=False, **SAMPLED)
    assert _shard_bytes(tmp_path / "dp") == _shard_bytes(tmp_path / "one")


def test_a_rerun_with_other_settings_is_refused(tmp_path, target):
    generate_shards(target, random_prompts(4), tmp_path, progress=False, **SAMPLED)
    with pytest.raises(DatasetError, match="holds data of another run"):
        generate_shards(
            target, random_prompts(4), tmp_path, progress=False, **(SAMPLED | {"seed": 8})
        )
    with pytest.raises(DatasetError, match="holds data of another run"):
        generate_shards(target, random_prompts(4, seed=1), tmp_path, progress=False, **SAMPLED)


class ChatTokenizer(CharTokenizer):
    chat_template = "{role}: {content}\n"  # stands for a real Jinja template

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        text = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        text += "<assistant>" if add_generation_prompt else ""
        return self(text)["input_ids"] if tokenize else text


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_chat_prompts_end_at_the_last_user_turn(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
        {
            "conversations": [
                {"from": "human", "value": "a"},
                {"from": "gpt", "value": "b"},
                {"from": "human", "value": "c"},
            ]
        },
        {"text": "plain"},
        {"messages": [{"role": "user", "content": "x" * 50}]},  # too long: skipped
    ]
    tok = ChatTokenizer(64)
    prompts = load_chat_prompts(_jsonl(tmp_path / "c.jsonl", rows), tok, max_prompt_len=40)
    assert prompts == [
        tok("<user>hi<assistant>")["input_ids"],
        tok("<user>a<assistant>b<user>c<assistant>")["input_ids"],
        tok("<user>plain<assistant>")["input_ids"],
    ]
    with pytest.raises(DatasetError, match="1 rows, 1 longer than max_prompt_len 10"):
        load_chat_prompts(_jsonl(tmp_path / "d.jsonl", rows[3:]), tok, max_prompt_len=10)
    with pytest.raises(DatasetError, match="has no chat template"):
        load_chat_prompts(tmp_path / "c.jsonl", CharTokenizer(64), max_prompt_len=40)


def test_chat_answers_stop_at_eos_and_are_stored_ragged(tmp_path, target):
    eos = 5
    target.generation_config.eos_token_id = eos
    try:
        prompts = [[1, 2, 3], [4, 6, 7, 8, 9], [10, 11, 12]]
        engine = TransformersEngine(target, batch_size=8)
        answers = engine.generate(prompts, 0, 20, 0.0, 0, 0, stop_at_eos=True)
        generate_shards(target, prompts, tmp_path, gen_len=20, temperature=0.0, stop_at_eos=True,
                        progress=False)  # fmt: skip
    finally:
        target.generation_config.eos_token_id = 0
    for a in answers:
        assert eos not in a[:-1] and (a[-1] == eos or len(a) == 20)
    store = SequenceStore(tmp_path)
    assert store.prompt_lens.tolist() == [3, 5, 3]
    assert store.lengths.tolist() == [3 + len(answers[0]), 5 + len(answers[1]), 3 + len(answers[2])]
    batch = store.batch([1, 0])
    assert batch.tokens[0, : store.lengths[1]].tolist() == prompts[1] + answers[1]
    assert batch.tokens[1, : store.lengths[0]].tolist() == prompts[0] + answers[0]
    assert int(batch.attention_mask.sum()) == int(store.lengths[[0, 1]].sum())
    with pytest.raises(DatasetError, match="sequences of different lengths"):
        read_shards(tmp_path)  # prompt lengths differ: the in-memory tools cannot take it


def test_first_format_shards_are_still_read(tmp_path):
    tokens = torch.randint(0, 50, (5, 12), dtype=torch.int32)
    save_file({"tokens": tokens[:3]}, str(tmp_path / "shard-00000.safetensors"))
    save_file({"tokens": tokens[3:]}, str(tmp_path / "shard-00001.safetensors"))
    (tmp_path / "manifest.json").write_text(json.dumps({"prompt_len": 4, "vocab_size": 50}))
    shards = read_shards(tmp_path)
    assert torch.equal(shards.tokens, tokens.long()) and shards.prompt_len == 4
    store = SequenceStore(tmp_path)
    assert torch.equal(store.batch([4, 0]).tokens, tokens[[4, 0]].long())
    assert store.lengths.tolist() == [12] * 5 and store.prompt_lens.tolist() == [4] * 5


def test_prompt_sources(tmp_path, monkeypatch):
    rows = [{"text": "abcdef"}, {"body": "ghijkl"}]
    path = _jsonl(tmp_path / "rows.txt", rows)  # JSON lines whatever the suffix
    assert [r for _, r in iter_rows(path)] == rows
    body = _jsonl(tmp_path / "body.jsonl", rows[1:])
    assert load_prompts(body, CharTokenizer(64), 3, text_field="body") == [
        CharTokenizer(64)("ghi")["input_ids"],
        CharTokenizer(64)("jkl")["input_ids"],
    ]
    import gzip

    with gzip.open(tmp_path / "rows.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(rows[0]) + "\n")
    assert [r for _, r in iter_rows(tmp_path / "rows.jsonl.gz")] == rows[:1]
    monkeypatch.setitem(sys.modules, "datasets", None)  # parquet / HF names need `datasets`
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(ImportError, match=r'pip install "arctic-drafters\[data\]"'):
        list(iter_rows(tmp_path / "t.parquet"))
    with pytest.raises(ImportError, match="datasets"):
        list(iter_rows("some-org/some-dataset"))


def test_parquet_arrow_and_dataset_folders_through_datasets(tmp_path):
    pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"text": ["abcdefgh", "ijklmnop"]})
    pq.write_table(table, tmp_path / "p.parquet")
    with (
        pa.OSFile(str(tmp_path / "p.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    (tmp_path / "folder").mkdir()
    pq.write_table(table, tmp_path / "folder" / "train.parquet")
    tok = CharTokenizer(64)
    expected = [tok(t)["input_ids"] for t in ("abcd", "efgh", "ijkl", "mnop")]
    for source in ("p.parquet", "p.arrow", "folder"):
        assert load_prompts(tmp_path / source, tok, 4) == expected, source
