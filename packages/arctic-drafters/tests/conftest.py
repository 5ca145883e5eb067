from __future__ import annotations

import pytest
import torch

from arctic_drafters import LSTMSpeculatorConfig, MLPSpeculatorConfig


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


SMALL_CONFIGS = {
    "mlp-tied": MLPSpeculatorConfig(vocab_size=61, hidden_size=20, inner_dim=12),
    "mlp-untied": MLPSpeculatorConfig(
        61, 20, 12, n_predict=4, tie_weights=False, scale_input=False
    ),
    "lstm": LSTMSpeculatorConfig(61, 20, 12),
    "lstm-untied-embs": LSTMSpeculatorConfig(61, 20, 12, tie_weights=False, tie_lstm_embs=False),
    "sum-rnn": LSTMSpeculatorConfig(61, 20, 12, method="sum_rnn"),
}


@pytest.fixture(params=sorted(SMALL_CONFIGS))
def small_config(request):
    return SMALL_CONFIGS[request.param]
