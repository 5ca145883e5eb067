"""ArcticProposer outside the engine: it refuses to run without the plugin's patches."""

from __future__ import annotations

import pytest

from arctic_vllm import ArcticConfigError
from arctic_vllm.proposer import ArcticProposer


def test_without_options_it_explains_how_to_configure_it(engine_config):
    # What vLLM builds for custom_class when our config patch did not run.
    config = engine_config(
        {"method": "custom_class", "model": "arctic_vllm.proposer.ArcticProposer",
         "num_speculative_tokens": 4}
    )  # fmt: skip
    with pytest.raises(ArcticConfigError, match=r"speculative_config=\{'method': 'arctic'") as err:
        ArcticProposer(config)
    assert "ARCTIC_VLLM_DISABLE" in str(err.value)


def test_vllms_custom_class_propose_says_the_patch_is_missing(engine_config):
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 4}))
    assert proposer.num_speculative_tokens == 4 and proposer.suffix is not None
    with pytest.raises(RuntimeError, match=r"model-runner patch is not applied"):
        proposer.propose([[1]], [1], None)


def _runner(requests: dict[str, tuple[list[int], dict[str, object]]]):
    """A stand-in for vLLM's model runner: what propose_for_runner reads."""
    from types import SimpleNamespace

    import numpy as np

    ids = list(requests)
    width = max(len(tokens) for tokens, _ in requests.values())
    table = np.zeros((len(ids), width), dtype=np.int32)
    for i, (tokens, _) in enumerate(requests.values()):
        table[i, : len(tokens)] = tokens
    batch = SimpleNamespace(
        req_ids=ids,
        num_tokens_no_spec=np.array([len(t) for t, _ in requests.values()]),
        token_ids_cpu=table,
        num_prompt_tokens=np.array([3 for _ in ids]),  # every prompt here is 3 tokens
    )
    states = {
        rid: SimpleNamespace(sampling_params=SimpleNamespace(extra_args=extra), lora_request=None)
        for rid, (_, extra) in requests.items()
    }
    return SimpleNamespace(input_batch=batch, requests=states)


def _step(proposer, runner, finished=()):
    from types import SimpleNamespace

    sched = SimpleNamespace(finished_req_ids=set(finished), scheduled_spec_decode_tokens={})
    sampled = [[int(t[n - 1])] for t, n in zip(
        runner.input_batch.token_ids_cpu, runner.input_batch.num_tokens_no_spec, strict=True
    )]  # fmt: skip
    return proposer.propose_for_runner(runner, sched, sampled, None, None)


def test_request_namespaces_separate_the_global_suffix_trees(engine_config):
    config = engine_config(
        {"method": "suffix", "num_speculative_tokens": 4, "suffix_decoding_namespace": "request"}
    )
    proposer = ArcticProposer(config)
    # Request "a" in namespace t1 generates 10..15 one token per step, then finishes.
    prompt = [1, 2, 3]
    for n in range(1, 7):
        out = prompt + list(range(10, 10 + n))
        _step(proposer, _runner({"a": (out, {"suffix_namespace": "t1"})}))
    # Its finish event arrives with the next step; "b" (t1) and "c" (t2) share a context
    # that "a"'s output continues.
    context = [7, 8, 9, 10, 11]
    runner = _runner(
        {"b": (context, {"suffix_namespace": "t1"}), "c": (context, {"suffix_namespace": "t2"})}
    )
    drafts = _step(proposer, runner, finished={"a"})
    assert drafts[0][:2] == [12, 13]  # from t1's global tree
    assert drafts[1] == []  # t2 never saw that output


@pytest.mark.parametrize(("max_tokens", "longest"), [(None, 8), (100, 8), (12, 3), (9, 0)])
def test_drafts_stop_at_the_requests_max_tokens(engine_config, max_tokens, longest):
    """Draft tokens past max_tokens would be verified for nothing: a request that may
    still generate `left` tokens gets at most left - 1 (the bonus token is the last)."""
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 8}))
    tokens = [1, 2, 3] + [4, 5, 6, 7] * 2  # prompt of 3, 8 generated, self-repeating
    runner = _runner({"a": (tokens, {})})
    runner.requests["a"].sampling_params.max_tokens = max_tokens
    [draft] = _step(proposer, runner)
    assert len(draft) == longest  # max_tokens 12: 4 left -> 3; 9: 1 left -> no draft
    assert draft == [4, 5, 6, 7, 4, 5, 6, 7][:longest]


@pytest.mark.parametrize("saved", [False, True])
def test_fp8_heads_come_from_the_saved_gptq_layers_when_the_drafter_has_them(
    engine_config, lstm_drafter, tmp_path, arctic_log, saved
):
    """drafter_fp8: layers saved beside the drafter (`arctic-train quantize`: GPTQ) are
    served as saved; without that file the heads are rounded to nearest at load."""
    import shutil

    import torch

    from arctic_drafters import load_drafter
    from arctic_kernels import FP8_LAYERS_FILE, Fp8Linear, quantize_drafter, save_fp8_layers

    drafter_dir = tmp_path / "lstm"
    shutil.copytree(lstm_drafter, drafter_dir)
    (drafter_dir / FP8_LAYERS_FILE).unlink(missing_ok=True)  # the bundled drafter has one
    if saved:
        offline = load_drafter(drafter_dir, dtype=torch.bfloat16)
        g = torch.Generator().manual_seed(0)
        states = torch.randn(64, offline.config.hidden_size, generator=g).to(torch.bfloat16)
        last = torch.randint(0, offline.config.vocab_size, (64,), generator=g)
        quantize_drafter(
            offline,
            activation_scheme="none",
            out_dtype=torch.float32,
            calibration=lambda m: m.propose(states, last, 3),
        )
        save_fp8_layers(offline, drafter_dir / FP8_LAYERS_FILE)
    proposer = ArcticProposer(
        engine_config(
            {"method": "arctic", "model": str(drafter_dir), "drafter_fp8": True,
             "drafter_compile": False}
        )
    )  # fmt: skip
    target = torch.nn.Linear(2, 2).to(torch.float32)  # what load_model reads: dtype, device
    proposer.load_model(target)
    heads = [m for m in proposer.drafter.speculator.modules() if isinstance(m, Fp8Linear)]
    assert heads and all(not h.check_finite for h in heads)  # CUDA-graph safe
    want = ("gptq", "none", torch.float32) if saved else ("nearest", "per_token", torch.float32)
    assert {(h.rounding, h.activation_scheme, h.out_dtype) for h in heads} == {want}
    line = next(r.getMessage() for r in arctic_log.records if "arctic: drafter" in r.getMessage())
    assert (FP8_LAYERS_FILE in line) == saved and ("round-to-nearest" in line) == (not saved)


@pytest.mark.parametrize(("int8", "compile"), [(None, True), (False, False)])
def test_cpu_drafters_get_int8_weights_and_a_compiled_loop_by_default(
    engine_config, lstm_drafter, arctic_log, int8, compile
):
    """On the CPU the defaults are int8 heads + projections (the fused kernel) and a
    compiled draft loop; both can be switched off. Drafts stay close to the drafter's own."""
    import torch

    from arctic_kernels import Int8Linear
    from arctic_runtime.proposer import ProposeRequest

    config = {"method": "arctic", "model": str(lstm_drafter)}
    if int8 is not None:
        config["drafter_int8"] = int8
    config["drafter_compile"] = compile
    proposer = ArcticProposer(engine_config(config))
    proposer.load_model(torch.nn.Linear(2, 2))  # what load_model reads: dtype, device
    spec = proposer.drafter.speculator
    quantized = sorted(n for n, m in spec.named_modules() if isinstance(m, Int8Linear))
    assert quantized == ([] if int8 is False else ["head.0", "proj.0", "proj.1"])
    assert proposer.draft_mode == ("compiled" if compile else "eager")
    line = next(r.getMessage() for r in arctic_log.records if "arctic: drafter" in r.getMessage())
    assert ("int8 weights (3 layers" in line) == (int8 is None), line
    assert f"draft loop {proposer.draft_mode}" in line
    # The compile is announced (with how to skip it) and timed; an eager build says nothing.
    messages = [r.getMessage() for r in arctic_log.records]
    announced = [m for m in messages if "compiling (torch.compile) the draft loop" in m]
    timed = [m for m in messages if m.startswith("arctic: draft loop ready in ")]
    assert (len(announced), len(timed)) == ((1, 1) if compile else (0, 0))
    if compile:
        assert "'drafter_compile': false" in announced[0] and "(compiled)" in timed[0]
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(8, spec.config.hidden_size, generator=g)
    reqs = [ProposeRequest(f"r{i}", 3, i + 5, hidden[i]) for i in range(8)]
    for r in reqs:
        proposer.drafter.start_request(r.req_id, [1, 2, 3])
    drafts = proposer.drafter.propose(reqs)
    assert all(d is not None and len(d) == 3 for d in drafts)


@pytest.mark.parametrize(
    ("extra", "drafts"),
    [
        ({"speculation": False}, False),
        ({"speculation": 0}, False),  # what vllm_xargs {"speculation": false} delivers
        ({"speculation": "false"}, False),
        ({"speculation": "OFF"}, False),
        ({"speculation": 1}, True),
        ({"speculation": "true"}, True),
        ({"speculation": 2}, True),  # not a boolean: logged, speculation stays on
        ({}, True),
    ],
)
def test_per_request_switch_accepts_what_the_openai_server_delivers(
    engine_config, extra, drafts, arctic_log
):
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 8}))
    tokens = [1, 2, 3] + [4, 5, 6, 7] * 2
    [draft] = _step(proposer, _runner({"a": (tokens, extra)}))
    assert bool(draft) is drafts
    if extra.get("speculation") == 2:
        assert "extra_args['speculation'] = 2 is not a boolean" in arctic_log.text


@pytest.mark.parametrize(
    ("cap", "longest"), [(2, 2), ("2", 2), (2.0, 2), ("0", 0), ("x", 8), (-1, 8), (True, 8)]
)
def test_per_request_cap_accepts_ints_in_any_spelling(engine_config, cap, longest):
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 8}))
    tokens = [1, 2, 3] + [4, 5, 6, 7] * 2
    [draft] = _step(proposer, _runner({"a": (tokens, {"max_speculative_tokens": cap})}))
    assert len(draft) == longest


def test_request_flag_and_count_name_the_key_and_value():
    from arctic_vllm.options import request_count, request_flag

    with pytest.raises(ValueError, match=r"extra_args\['speculation'\] = 'maybe'"):
        request_flag("speculation", "maybe")
    with pytest.raises(ValueError, match=r"extra_args\['max_speculative_tokens'\] = 1.5"):
        request_count("max_speculative_tokens", 1.5)
    assert request_flag("k", " Yes ") is True and request_count("k", " 7 ") == 7


def _cost_aware_run(proposer, *, per_token: float, accept: bool, steps: int) -> list[int]:
    """A self-repeating request served `steps` steps on a clock where a step costs 1 s plus
    `per_token` s per scheduled token; its drafts all accepted, or all rejected. Returns
    the draft length proposed at each step."""
    from types import SimpleNamespace

    from arctic_runtime import DraftPlanner, LinearCostFit

    clock = SimpleNamespace(now=0.0)
    proposer.planner = DraftPlanner(
        proposer.num_speculative_tokens, sources=("suffix",), clock=lambda: clock.now,
        step_cost=LinearCostFit(warmup_samples=2),
    )  # fmt: skip
    tokens = [1, 2, 3] + [4, 5, 6, 7] * 2
    draft: list[int] = []
    lengths = []
    for _ in range(steps):
        new = []
        for _ in range((len(draft) if accept else 0) + 1):
            new.append(tokens[-4])  # the target continues the cycle 4 5 6 7
            tokens.append(new[-1])
        clock.now += 1.0 + per_token * (1 + len(draft))
        sched = SimpleNamespace(
            finished_req_ids=set(),
            scheduled_spec_decode_tokens={"a": draft} if draft else {},
            total_num_scheduled_tokens=1 + len(draft),
        )
        [draft] = proposer.propose_for_runner(
            _runner({"a": (tokens, {})}), sched, [new], None, None
        )
        lengths.append(len(draft))
    return lengths


def test_cost_aware_drafts_long_when_verifying_is_nearly_free(engine_config):
    proposer = ArcticProposer(
        engine_config({"method": "suffix", "num_speculative_tokens": 8, "cost_aware": True})
    )
    assert proposer.planner is not None and proposer.planner.sources == ("suffix",)
    lengths = _cost_aware_run(proposer, per_token=0.001, accept=True, steps=30)
    # The caps while the step cost has no fit; then one step undrafted: two equal steps
    # are no spread, so the first fit charges each token its share of the step (and the
    # shorter step that follows shows what a token costs).
    assert lengths == [8, 8, 0] + [8] * 27
    c = proposer.planner.counters
    assert (c.steps, c.warmup_steps, c.zero_steps) == (30, 2, 1)
    assert proposer.metrics.planner == c.as_dict()  # exported with the other metrics
    assert proposer.metrics.sources["suffix"].accepted_tokens == sum(lengths[:-1])


def test_cost_aware_stops_drafting_when_drafts_do_not_pay(engine_config):
    from prometheus_client import REGISTRY

    name = "vllm:arctic_spec_decode_planner_zero_steps_total"
    before = REGISTRY.get_sample_value(name) or 0.0
    proposer = ArcticProposer(
        engine_config({"method": "suffix", "num_speculative_tokens": 8, "cost_aware": True})
    )
    # A token costs half a step and every draft is rejected.
    lengths = _cost_aware_run(proposer, per_token=0.5, accept=False, steps=60)
    c = proposer.planner.counters
    assert sum(lengths[20:]) <= 2 * (40 // 16 + 1)  # probes only
    assert c.zero_steps >= 35 and c.probes >= 2
    assert REGISTRY.get_sample_value(name) - before == c.zero_steps


def test_cost_aware_is_off_by_default(engine_config):
    proposer = ArcticProposer(engine_config({"method": "suffix", "num_speculative_tokens": 8}))
    assert proposer.planner is None
