from __future__ import annotations

import math

import pytest

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig, build_speculator
from arctic_drafters.config import MAX_PARAMETERS, config_from_dict


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (MLPSpeculatorConfig, {"vocab_size": 0}, "vocab_size must be a positive int, got 0"),
        (MLPSpeculatorConfig, {"hidden_size": 2.5}, "hidden_size must be a positive int, got 2.5"),
        (MLPSpeculatorConfig, {"inner_dim": True}, "inner_dim must be a positive int, got True"),
        (MLPSpeculatorConfig, {"n_predict": -1}, "n_predict must be a positive int, got -1"),
        (MLPSpeculatorConfig, {"n_predict": 1}, "tie_weights needs n_predict >= 2"),
        (MLPSpeculatorConfig, {"scale_input": 1}, "scale_input must be a bool, got 1"),
        (MLPSpeculatorConfig, {"norm_eps": 0.0}, "norm_eps must be a float in"),
        (LSTMSpeculatorConfig, {"method": "gru"}, "method must be one of .*'gru'"),
        (LSTMSpeculatorConfig, {"tie_lstm_embs": "yes"}, "tie_lstm_embs must be a bool"),
        (
            MLPSpeculatorConfig,
            {"vocab_size": 10**11},
            "vocab_size must be <= 4194304, got 100000000000 ",
        ),
        (
            MLPSpeculatorConfig,
            {"vocab_size": 1e11},
            r"vocab_size must be a positive int, got 100000000000\.0",
        ),
        (MLPSpeculatorConfig, {"hidden_size": 65537}, "hidden_size must be <= 65536"),
        (LSTMSpeculatorConfig, {"inner_dim": 2**40}, "inner_dim must be <= 65536"),
        (MLPSpeculatorConfig, {"n_predict": 33}, "n_predict must be <= 32, got 33"),
        (
            MLPSpeculatorConfig,  # every size within its limit, but 4M x 65536 x 2 in all
            {"vocab_size": 4_000_000, "inner_dim": 65536},
            rf"more than MAX_PARAMETERS={MAX_PARAMETERS} .*lower inner_dim",
        ),
    ],
)
def test_validation_names_field_and_value(cls, kwargs, message):
    base = {"vocab_size": 10, "hidden_size": 8, "inner_dim": 4}
    with pytest.raises(ValueError, match=message):
        cls(**(base | kwargs))


def test_mixing_weight_follows_the_paper():
    c = MLPSpeculatorConfig(10, 8, 64, n_predict=3)
    sw = 0.5 ** (0.5 / 3)
    assert c.emb_scale == pytest.approx(math.sqrt((1 - sw**2) * 32) / sw)


@pytest.mark.parametrize(
    "config", [MLPSpeculatorConfig(10, 8, 4), LSTMSpeculatorConfig(10, 8, 4, method="sum_rnn")]
)
def test_dict_round_trip(config):
    assert config_from_dict(config.to_dict()) == config


def test_unknown_fields_and_kinds_are_rejected():
    with pytest.raises(ValueError, match=r"unknown mlp config fields: \['method'\]"):
        config_from_dict(MLPSpeculatorConfig(10, 8, 4).to_dict() | {"method": "sum_lstm"})
    with pytest.raises(ValueError, match="kind must be"):
        config_from_dict({"kind": "gru"})


@pytest.mark.parametrize(
    "config",
    [
        MLPSpeculatorConfig(61, 20, 12),
        MLPSpeculatorConfig(61, 20, 12, n_predict=4, tie_weights=False),
        MLPSpeculatorConfig(61, 20, 12, n_predict=2),
        LSTMSpeculatorConfig(61, 20, 12),
        LSTMSpeculatorConfig(61, 20, 12, n_predict=5, tie_weights=False, tie_lstm_embs=False),
        LSTMSpeculatorConfig(61, 20, 12, method="sum_rnn", tie_weights=False),
        LSTMSpeculatorConfig(61, 20, 12, method="sum_rnn", tie_lstm_embs=False),
    ],
)
def test_parameter_count_is_the_built_models(config):
    assert config.parameter_count() == build_speculator(config).num_parameters()


def test_base_model_archs_is_a_tuple_of_names():
    config = LSTMSpeculatorConfig(10, 8, 4, base_model_archs=["LlamaForCausalLM"])
    assert config.base_model_archs == ("LlamaForCausalLM",)
    assert config_from_dict(config.to_dict()) == config
    assert config.to_dict()["base_model_archs"] == ["LlamaForCausalLM"]  # JSON
    for bad in ("LlamaForCausalLM", ("",), (5,)):
        with pytest.raises(ValueError, match="base_model_archs must be a tuple"):
            MLPSpeculatorConfig(10, 8, 4, base_model_archs=bad)
