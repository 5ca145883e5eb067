"""The speculative-config patch, through vLLM's real EngineArgs.create_engine_config (no engine).

This is the start-up path: vLLM builds its VllmConfig in the front-end process and pickles it
to the engine core and workers, so our options must ride on the SpeculativeConfig object.
"""

from __future__ import annotations

import pickle

import pytest

from arctic_vllm import ArcticConfigError, ArcticOptions
from arctic_vllm.patches.speculative_config import OPTIONS_ATTR, PROPOSER_CLASS


def test_method_arctic_becomes_vllms_custom_class_carrying_our_options(engine_config, lstm_drafter):
    user = {
        "method": "arctic",
        "model": str(lstm_drafter),
        "enable_suffix_decoding": True,
        "num_speculative_tokens": 8,
        "suffix_decoding_max_tree_depth": 32,
    }
    before = dict(user)
    spec = engine_config(user).speculative_config
    assert spec.method == "custom_class"
    assert spec.model == PROPOSER_CLASS == "arctic_vllm.proposer.ArcticProposer"
    assert spec.num_speculative_tokens == 8
    options = getattr(spec, OPTIONS_ATTR)
    assert OPTIONS_ATTR == "arctic_options"
    assert isinstance(options, ArcticOptions)
    assert options.method == "arctic"
    assert options.drafter_path == str(lstm_drafter)
    assert options.enable_suffix_decoding is True
    assert options.num_speculative_tokens == 8
    assert options.suffix_max_depth == 32
    assert user == before  # the caller's dict is left as it was


def test_options_survive_pickling_as_workers_receive_them(engine_config, lstm_drafter):
    config = engine_config({"method": "arctic", "model": str(lstm_drafter), "drafter_fp8": True})
    options = getattr(config.speculative_config, OPTIONS_ATTR)
    spec = pickle.loads(pickle.dumps(config.speculative_config))
    assert getattr(spec, OPTIONS_ATTR) == options
    assert spec.method == "custom_class" and spec.model == PROPOSER_CLASS
    whole = pickle.loads(pickle.dumps(config))
    assert getattr(whole.speculative_config, OPTIONS_ATTR) == options


def test_k_defaults_to_the_drafters_n_predict(engine_config, drafter_dir):
    spec = engine_config({"method": "arctic", "model": str(drafter_dir)}).speculative_config
    assert spec.num_speculative_tokens == 3
    assert getattr(spec, OPTIONS_ATTR).num_speculative_tokens == 3


def test_method_suffix_is_served_by_arctic(engine_config):
    spec = engine_config({"method": "suffix"}).speculative_config
    assert spec.method == "custom_class" and spec.model == PROPOSER_CLASS
    assert spec.num_speculative_tokens == 16
    options = getattr(spec, OPTIONS_ATTR)
    assert options.method == "suffix" and options.enable_suffix_decoding is True


def test_arctic_inference_backend_leaves_method_suffix_to_vllm(engine_config):
    pytest.importorskip("arctic_inference", reason="vLLM's own suffix decoding imports it")
    user = {
        "method": "suffix",
        "num_speculative_tokens": 8,
        "suffix_decoding_backend": "arctic_inference",
    }
    spec = engine_config(user).speculative_config
    assert spec.method == "suffix"
    assert spec.num_speculative_tokens == 8
    assert not hasattr(spec, OPTIONS_ATTR)


def test_other_methods_are_untouched(engine_config):
    spec = engine_config(
        {"method": "ngram", "num_speculative_tokens": 4, "prompt_lookup_max": 3}
    ).speculative_config
    assert spec.method == "ngram" and spec.prompt_lookup_max == 3
    assert not hasattr(spec, OPTIONS_ATTR)
    assert engine_config(None).speculative_config is None


def test_arctic_suffix_backend_is_ours(engine_config):
    user = {"method": "suffix", "suffix_decoding_backend": "arctic_suffix"}
    spec = engine_config(user).speculative_config
    assert spec.model == PROPOSER_CLASS and getattr(spec, OPTIONS_ATTR).method == "suffix"


LSTM = "<the tiny lstm drafter>"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"method": "arctic", "model": LSTM, "suffix_decoding_eviction": "random"},
            r"\['suffix_decoding_eviction'\] must be 'lru' or 'fifo', got 'random'",
        ),
        ({"method": "suffix", "bogus": 1}, r"unknown speculative_config option 'bogus'"),
        ({"method": "arctic"}, r"method 'arctic' needs speculative_config\['model'\]"),
        ({"method": "arctic", "model": "/no/such/drafter"}, r"is not a directory"),
        (
            {"method": "suffix", "suffix_decoding_backend": "bogus"},
            r"\['suffix_decoding_backend'\] = 'bogus': must be one of",
        ),
        (
            {"method": "arctic", "model": LSTM, "suffix_decoding_backend": "arctic_inference"},
            r"\['suffix_decoding_backend'\] = 'arctic_inference'.*with method 'suffix'",
        ),
        (
            {"method": "ngram", "suffix_decoding_backend": "arctic_suffix"},
            r"with method 'suffix'",
        ),
    ],
)
def test_bad_config_fails_at_start_up(engine_config, lstm_drafter, config, message):
    config = {k: str(lstm_drafter) if v == LSTM else v for k, v in config.items()}
    with pytest.raises(ArcticConfigError, match=message):
        engine_config(config)


def test_cli_spec_flags_reach_the_translation(tiny_model, lstm_drafter):
    # `vllm serve --spec-method arctic --spec-model DIR --spec-tokens 4`: vLLM merges these
    # into the dict inside the function we patch; we merge them first.
    from vllm.engine.arg_utils import EngineArgs

    from arctic_vllm.patches import apply_all

    apply_all()
    args = EngineArgs(
        model=str(tiny_model), max_model_len=512, enforce_eager=True, dtype="float32",
        spec_method="arctic", spec_model=str(lstm_drafter), spec_tokens=2,
    )  # fmt: skip
    spec = args.create_engine_config().speculative_config
    assert spec.method == "custom_class" and spec.num_speculative_tokens == 2
    assert getattr(spec, OPTIONS_ATTR).drafter_path == str(lstm_drafter)
    both = EngineArgs(
        model=str(tiny_model), max_model_len=512, dtype="float32",
        spec_method="suffix", speculative_config={"method": "suffix"},
    )  # fmt: skip
    with pytest.raises(ValueError, match="--spec-method and --speculative-config"):
        both.create_engine_config()
