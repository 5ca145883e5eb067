"""The vllm.general_plugins entry point: declared, version-checked, re-entrant, switchable off."""

from __future__ import annotations

import importlib.metadata

import pytest

import arctic_vllm.patches
import arctic_vllm.plugin as plugin
from arctic_vllm import DISABLE_ENV, LEDGER, SUPPORTED_VLLM, UnsupportedVllmError, register
from arctic_vllm.plugin import check_vllm_version


@pytest.fixture
def fresh_process_state(monkeypatch):
    """register() as if in a process where it never ran (restored afterwards)."""
    monkeypatch.setattr(plugin, "_registered", None)
    monkeypatch.delenv(DISABLE_ENV, raising=False)


@pytest.fixture
def apply_all_calls(monkeypatch):
    calls = []
    real = arctic_vllm.patches.apply_all

    def counting() -> list[str]:
        calls.append(1)
        return real()

    monkeypatch.setattr(arctic_vllm.patches, "apply_all", counting)
    return calls


def test_entry_point_is_declared():
    entry_points = importlib.metadata.entry_points(group="vllm.general_plugins")
    ours = [ep for ep in entry_points if ep.name == "arctic"]
    assert len(ours) == 1
    assert ours[0].value == "arctic_vllm.plugin:register"
    assert ours[0].load() is register


@pytest.mark.parametrize("version", ["0.32.0", "0.32.1+cpu", "0.32.9", "0.32.2.dev3+g1234abc"])
def test_supported_versions_pass(version):
    check_vllm_version(version)


@pytest.mark.parametrize("version", ["0.31.9", "0.33.0", "0.33.0+cpu", "1.0.0", "0.9.2"])
def test_unsupported_versions_name_the_range_and_the_off_switch(version):
    low, high = SUPPORTED_VLLM
    with pytest.raises(UnsupportedVllmError) as err:
        check_vllm_version(version)
    message = str(err.value)
    assert f">= {low}, < {high}" in message
    assert version in message
    assert f"{DISABLE_ENV}=1" in message


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
    assert "speculative_config methods 'arctic' and 'suffix'" in messages[0]


@pytest.mark.usefixtures("fresh_process_state")
def test_register_refuses_an_unsupported_vllm_before_patching(monkeypatch, apply_all_calls):
    import vllm

    monkeypatch.setattr(vllm, "__version__", "0.33.0")
    with pytest.raises(UnsupportedVllmError, match=r"this is vLLM 0\.33\.0"):
        register()
    assert apply_all_calls == []
    assert plugin._registered is None  # a later call (fixed install) still registers
