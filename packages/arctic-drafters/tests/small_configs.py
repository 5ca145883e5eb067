"""Small drafter configs of every kind, shared by the fixture in conftest and the tests that
iterate over them (imported by this module's own name: a bare `from conftest import` finds
whichever package's conftest pytest imported first when several packages are collected)."""

from __future__ import annotations

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig

SMALL_CONFIGS = {
    "mlp-tied": MLPSpeculatorConfig(vocab_size=61, hidden_size=20, inner_dim=12),
    "mlp-untied": MLPSpeculatorConfig(
        61, 20, 12, n_predict=4, tie_weights=False, scale_input=False
    ),
    "lstm": LSTMSpeculatorConfig(61, 20, 12),
    "lstm-untied-embs": LSTMSpeculatorConfig(61, 20, 12, tie_weights=False, tie_lstm_embs=False),
    "sum-rnn": LSTMSpeculatorConfig(61, 20, 12, method="sum_rnn"),
}
