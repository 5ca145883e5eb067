"""The patch ledger: every patch is listed, documented, targets real vLLM symbols, applies once."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any

import pytest

import arctic_vllm.patches as patches
from arctic_vllm import LEDGER, PatchError, PatchRecord, contract
from arctic_vllm.patches import is_patched, patch_attribute


def test_ledger_fields_are_filled_in():
    assert LEDGER, "the ledger lists no patch"
    for record in LEDGER:
        assert isinstance(record, PatchRecord)
        for field in dataclasses.fields(PatchRecord):
            value = getattr(record, field.name)
            assert isinstance(value, str) and value.strip(), (record.module, field.name)


def test_each_record_names_a_patch_module_with_apply():
    for record in LEDGER:
        module = importlib.import_module(f"arctic_vllm.patches.{record.module}")
        assert callable(getattr(module, "apply", None)), record.module


def test_every_patch_module_is_in_the_ledger_once():
    modules = [info.name for info in pkgutil.iter_modules(patches.__path__)]
    listed = [record.module for record in LEDGER]
    assert sorted(listed) == sorted(modules)
    assert len({record.target for record in LEDGER}) == len(LEDGER)


@pytest.mark.parametrize("record", LEDGER, ids=lambda r: r.module)
def test_targets_exist_in_the_installed_vllm(record):
    assert record.target.startswith("vllm.")
    # A target may end with a note in parentheses ("mod (module global `vars`)"): the module.
    assert contract.resolve(record.target.split(" (")[0]) is not None


def test_patching_one_attribute_twice_raises_and_keeps_the_first_patch():
    class Dummy:
        def method(self) -> str:
            return "original"

    original = Dummy.method

    def first(self: Any) -> str:
        return "first"

    def second(self: Any) -> str:
        return "second"

    assert not is_patched(Dummy, "method")
    assert patch_attribute(Dummy, "method", first) is original
    assert is_patched(Dummy, "method")
    assert Dummy.method.__wrapped__ is original
    with pytest.raises(PatchError, match="already patched"):
        patch_attribute(Dummy, "method", second)
    assert Dummy().method() == "first"
    # Refused before anything changed: the rejected function is not marked either.
    assert not getattr(second, "__arctic_patched__", False)
    assert not hasattr(second, "__wrapped__")


def test_patching_a_missing_attribute_raises():
    class Dummy:
        pass

    with pytest.raises(PatchError, match="no longer exists"):
        patch_attribute(Dummy, "gone", lambda: None)
    assert not hasattr(Dummy, "gone")


def test_apply_all_is_reentrant():
    patches.apply_all()  # patches whatever earlier tests (or vLLM's plugin loader) left
    assert patches.apply_all() == []
    from vllm.engine.arg_utils import EngineArgs
    from vllm.triton_utils import dispatcher
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    assert is_patched(EngineArgs, "create_speculative_config")
    assert is_patched(GPUModelRunner, "propose_draft_token_ids")
    assert is_patched(dispatcher, "vars")
    # Each patch wraps vLLM's own function exactly once.
    wrapped = EngineArgs.create_speculative_config.__wrapped__
    assert not getattr(wrapped, "__arctic_patched__", False)
    assert wrapped.__module__ == "vllm.engine.arg_utils"
