"""The bundled tiny target is a normal Hugging Face checkpoint that vLLM and transformers agree on."""

from __future__ import annotations

import json

import pytest

from arctic_vllm.bench import EDIT, FILE, TINY_MODEL


def test_checkpoint_is_a_small_llama_with_all_files():
    files = {p.name for p in TINY_MODEL.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
        "training_report.json",
    } <= files
    config = json.loads((TINY_MODEL / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (TINY_MODEL / "model.safetensors").stat().st_size < 40 * 2**20
    report = json.loads((TINY_MODEL / "training_report.json").read_text())
    assert 5e6 <= report["parameters"] <= 20e6


def test_tokenizer_round_trips_python_source(tokenizer):
    source = 'def f(x):\n    """Double x."""\n    return 2 * x  # ok\n'
    ids = tokenizer(source, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == source
    assert len(tokenizer.convert_tokens_to_ids([FILE, EDIT])) == 2
    assert tokenizer.eos_token == "<|endoftext|>"


@pytest.fixture(scope="module")
def hf_model():
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(TINY_MODEL, dtype=torch.float32).eval()


def _hf_greedy(model, prompt_ids: list[int], n: int) -> list[int]:
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, eos_token_id=None
        )
    return out[0, len(prompt_ids) :].tolist()


@pytest.mark.xfail(
    strict=True,
    reason="known gap: the bundled tiny target has not learned to copy its context (held-out "
    "copy loss 3.82 on a file vs 3.81 on its re-emission); strict, so a target that copies "
    "turns this into a failure to remove the mark",
)
def test_model_copies_a_file_it_never_saw(hf_model, tokenizer, requests_):
    """Agentic traffic is copy-heavy; a target that copies makes speculation measurable."""
    edit = next(r for r in requests_ if r.name.startswith("edit-"))
    body = edit.prompt_ids[1:-1]  # <|file|> body <|edit|>
    out = _hf_greedy(hf_model, edit.prompt_ids, len(body))
    matching = sum(a == b for a, b in zip(out, body, strict=True))
    assert matching / len(body) >= 0.8, tokenizer.decode(out)


@pytest.mark.vllm
def test_vllm_and_transformers_agree_on_greedy_tokens(hf_model, baseline, requests_):
    """Same checkpoint, two engines: the first greedy tokens are identical (float32)."""
    n = 16
    for idx in range(0, len(requests_), len(requests_) // 3):
        want = baseline[1].outputs[idx][:n]
        got = _hf_greedy(hf_model, requests_[idx].prompt_ids, len(want))
        assert got == want, requests_[idx].name
