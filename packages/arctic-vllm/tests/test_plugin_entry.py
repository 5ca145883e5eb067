"""The vllm.general_plugins entry point: declared, version-checked, re-entrant, switchable off."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import arctic_vllm.patches
import arctic_vllm.plugin as plugin
from arctic_vllm import DISABLE_ENV, LEDGER, UnsupportedVllmError, contract, register


@pytest.fixture
def fresh_process_state(monkeypatch):
    """register() as if in a process where it never ran (restored afterwards)."""
    monkeypatch.setattr(plugin, "_registered", None)
    monkeypatch.delenv(DISABLE_ENV, raising=False)


@pytest.fixture
def apply_all_calls(monkeypatch):
    calls = []
    real = arctic_vllm.patches.apply_all

    def counting(skip: frozenset[str] = frozenset()) -> list[str]:
        calls.append(1)
        return real(skip)

    monkeypatch.setattr(arctic_vllm.patches, "apply_all", counting)
    return calls


def test_entry_point_is_declared():
    entry_points = importlib.metadata.entry_points(group="vllm.general_plugins")
    ours = [ep for ep in entry_points if ep.name == "arctic"]
    assert len(ours) == 1
    assert ours[0].value == "arctic_vllm.plugin:register"
    assert ours[0].load() is register


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1+cpu", "0.33.0", "0.33.2.dev3+g1234abc"])
def test_tested_versions(version):
    assert contract.is_tested_version(version)


@pytest.mark.parametrize("version", ["0.31.9", "0.34.0", "0.330.0", "1.0.0"])
def test_untested_versions(version):
    assert not contract.is_tested_version(version)


@pytest.mark.usefixtures("fresh_process_state")
@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
def test_disabled_register_patches_nothing(monkeypatch, apply_all_calls, value):
    monkeypatch.setenv(DISABLE_ENV, value)
    assert register() == []
    assert register() == []
    assert apply_all_calls == []


@pytest.mark.usefixtures("fresh_process_state")
def test_register_is_reentrant_and_says_what_it_patched(apply_all_calls, arctic_log):
    first = register()
    second = register()
    assert first == second == [record.target for record in LEDGER]
    assert apply_all_calls == [1]
    messages = [r.getMessage() for r in arctic_log.records if r.name == "vllm.arctic"]
    assert len(messages) == 1
    assert "speculative_config methods 'arctic', 'suffix' and" in messages[0]


@pytest.mark.usefixtures("fresh_process_state")
def test_an_untested_vllm_whose_contract_holds_is_served_with_a_warning(
    monkeypatch, apply_all_calls, arctic_log
):
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.35.0")
    assert register() == [record.target for record in LEDGER]
    assert apply_all_calls == [1]
    assert plugin.UNSERVABLE == []
    messages = [r.getMessage() for r in arctic_log.records if r.name == "vllm.arctic"]
    assert any(
        "this is vLLM 0.35.0" in m and "tested with vLLM 0.32 and 0.33" in m for m in messages
    )


def _break_propose_signature(monkeypatch):
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    original = GPUModelRunner.propose_draft_token_ids
    if getattr(original, "__arctic_patched__", False):
        original = original.__wrapped__

    def propose_draft_token_ids(self, scheduler_output, sampled_token_ids, new_required):
        return original  # a vLLM that changed the signature we forward positionally

    monkeypatch.setattr(GPUModelRunner, "propose_draft_token_ids", propose_draft_token_ids)
    return GPUModelRunner


@pytest.mark.usefixtures("fresh_process_state")
def test_a_broken_contract_skips_that_patch_and_refuses_only_arctic_methods(
    monkeypatch, arctic_log, target_config
):
    runner = _break_propose_signature(monkeypatch)
    monkeypatch.setattr(plugin, "UNSERVABLE", [])
    skipped = []
    monkeypatch.setattr(arctic_vllm.patches, "apply_all", lambda skip: skipped.append(skip) or [])
    registered = register()  # must not raise: vLLM calls it with no try
    assert skipped == [frozenset({"model_runner"})]
    assert "vllm.v1.worker.gpu_model_runner.GPUModelRunner.propose_draft_token_ids" not in (
        registered
    )
    assert not getattr(runner.propose_draft_token_ids, "__arctic_patched__", False)
    [problem] = plugin.UNSERVABLE
    assert "propose_draft_token_ids" in problem and "lacks parameter(s)" in problem
    errors = [r.getMessage() for r in arctic_log.records if r.levelname == "ERROR"]
    assert any("cannot be served" in m and "propose_draft_token_ids" in m for m in errors)

    # Requesting an arctic method now fails naming the symbol; other methods are vLLM's.
    from vllm.engine.arg_utils import EngineArgs

    from arctic_vllm.patches import speculative_config

    speculative_config.apply()
    args = types.SimpleNamespace(speculative_config={"method": "suffix"})  # no model lookup
    target = types.SimpleNamespace(hf_config=target_config)
    with pytest.raises(UnsupportedVllmError, match="propose_draft_token_ids"):
        EngineArgs.create_speculative_config(args, target, None)


@pytest.mark.usefixtures("fresh_process_state")
def test_register_never_raises(monkeypatch, arctic_log):
    def boom() -> dict[str, list[str]]:
        raise RuntimeError("vLLM moved everything")

    monkeypatch.setattr(contract, "check_contract", boom)
    monkeypatch.setattr(plugin, "UNSERVABLE", [])
    assert register() == []
    assert plugin.UNSERVABLE
    assert any("registration failed" in r.getMessage() for r in arctic_log.records)


def test_the_installed_vllm_holds_the_contract():
    assert contract.check_contract() == {}


def test_an_optional_platform_module_may_be_absent_but_not_its_symbol():
    absent = contract.Requirement(
        "vllm.no_such_platform_module.fn", optional_module="vllm.no_such_platform_module"
    )
    assert contract.check_requirement(absent) is None
    present = contract.Requirement(
        "vllm.sampling_params.no_such_symbol", optional_module="vllm.sampling_params"
    )
    assert contract.check_requirement(present) == (
        "vllm.sampling_params.no_such_symbol does not exist"
    )
