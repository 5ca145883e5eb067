"""Hub ids resolve through huggingface_hub's cache, as vLLM resolves ``model``: offline from a
cache laid out here by hand (models--org--name/{refs,snapshots}), with revisions."""

from __future__ import annotations

import sys

import pytest
import torch
from anchor_checkpoints import write
from published_layouts import arctic_lstm_config, arctic_lstm_state

from arctic_drafters import (
    CheckpointError,
    LSTMSpeculator,
    load_drafter,
    load_drafter_config,
    resolve_checkpoint,
)

pytest.importorskip("huggingface_hub")

REPO = "Snowflake/Arctic-LSTM-Speculator-Llama-3.1-8B-Instruct"
MAIN, TAGGED = "a" * 40, "b" * 40
V, H, D = 97, 24, 16


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """HF_HUB_CACHE with two snapshots of REPO: main (3 heads, pytorch_model.bin) and the
    tag v0.1 (4 heads, model.safetensors); offline mode on."""
    cache = tmp_path / "hub"
    repo = cache / ("models--" + REPO.replace("/", "--"))
    write(
        repo / "snapshots" / MAIN,
        arctic_lstm_config(V, H, D, archs=["LlamaForCausalLM"]),
        arctic_lstm_state(V, H, D),
    )
    write(
        repo / "snapshots" / TAGGED,
        arctic_lstm_config(V, H, D, 4),
        arctic_lstm_state(V, H, D, 4, repeat_shared=False),
        "safetensors",
    )
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(MAIN)
    (repo / "refs" / "v0.1").write_text(TAGGED)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_a_hub_id_resolves_to_its_cached_snapshot(hub_cache):
    snapshot = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots"
    assert resolve_checkpoint(REPO) == snapshot / MAIN
    assert resolve_checkpoint(REPO, revision="v0.1") == snapshot / TAGGED
    assert resolve_checkpoint(REPO, revision=TAGGED) == snapshot / TAGGED


def test_load_drafter_takes_a_hub_id_and_revision(hub_cache):
    model = load_drafter(REPO)
    assert isinstance(model, LSTMSpeculator) and model.config.n_predict == 3
    assert model.config.base_model_archs == ("LlamaForCausalLM",)
    assert load_drafter_config(REPO, revision="v0.1").n_predict == 4
    tagged = load_drafter(REPO, revision="v0.1", dtype=torch.float64)
    assert tagged.propose(
        torch.randn(2, H, dtype=torch.float64), torch.tensor([1, 2]), 4
    ).shape == (
        2,
        4,
    )


def test_an_uncached_id_offline_names_the_id_the_cache_and_offline_mode(hub_cache):
    with pytest.raises(CheckpointError) as info:
        load_drafter_config("Snowflake/no-such-speculator")
    message = str(info.value)
    assert "'Snowflake/no-such-speculator' is not a local directory" in message
    assert "offline mode is on" in message and "HF_HUB_OFFLINE" in message
    assert str(hub_cache) in message and "revision 'main'" in message


def test_an_uncached_revision_is_named(hub_cache):
    with pytest.raises(
        CheckpointError, match=r"revision 'v9'.*offline mode is on.*hf download .* --revision v9"
    ):
        resolve_checkpoint(REPO, revision="v9")


def test_local_files_only_without_the_environment(hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert resolve_checkpoint(REPO, local_files_only=True).name == MAIN
    with pytest.raises(CheckpointError, match="offline mode is on"):
        resolve_checkpoint("Snowflake/absent", local_files_only=True)


def test_an_explicit_cache_dir_wins(hub_cache, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="empty"):
        resolve_checkpoint(REPO)
    assert resolve_checkpoint(REPO, cache_dir=hub_cache).name == MAIN


def test_a_local_directory_is_used_as_is_even_if_it_looks_like_an_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "Snowflake" / "local", arctic_lstm_config(V, H, D), arctic_lstm_state(V, H, D))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # never imported for a directory
    assert str(resolve_checkpoint("Snowflake/local", revision="ignored")) == "Snowflake/local"
    assert load_drafter("Snowflake/local").config.n_predict == 3


@pytest.mark.parametrize("name", ["/no/such/drafter", "./missing/dir/x", "a/b/c", "bad--id"])
def test_neither_a_directory_nor_an_id_is_a_clear_error(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match=r"is not a directory .*nor a Hugging Face Hub"):
        load_drafter(name)


def test_a_hub_id_without_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r'pip install "arctic-drafters\[hub\]"'):
        resolve_checkpoint(REPO)


def test_huggingface_hub_defaults_apply_without_the_environment(hub_cache, monkeypatch):
    """HF_HOME / HF_HUB_OFFLINE as huggingface_hub read them at import (its constants)."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert resolve_checkpoint(REPO).name == MAIN
    with pytest.raises(CheckpointError, match="offline mode is on"):
        resolve_checkpoint("Snowflake/absent")
