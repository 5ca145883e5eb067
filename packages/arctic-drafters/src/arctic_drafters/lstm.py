"""Arctic's LSTM speculator (Arctic Inference ``method="sum_lstm"``).

An extension of arXiv 2404.19124's MLP step: the same projected-state-plus-token-embedding
sum is split into forget / input / output gates and a cell candidate, so each head can keep
or overwrite what the previous head carried. The cell starts at zero for every draft.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LSTMSpeculatorConfig
from .layers import SpeculatorNorm, tied_index, tied_proj_index, unique_count
from .mlp import build_mlp_modules, mlp_step
from .speculator import Speculator, State


class LSTMSpeculator(Speculator):
    """Head i, with ``z = proj_i(h) + a * emb(token)`` split as [forget, input, output, cell]:
    ``c = f*c + i*GELU(LN_c(cand))``; ``h = GELU(LN_s(c)) * o``; logits = head_i(h).

    Stored modules: ``emb.j`` (V, D), or (V, 4D) without ``tie_lstm_embs``; ``proj.j``
    (4D, H for j=0 else 4D, D); ``cell_ln.j``, ``state_ln.j``, ``head.j``.
    """

    config: LSTMSpeculatorConfig

    def __init__(self, config: LSTMSpeculatorConfig) -> None:
        super().__init__()
        self.config = config
        self._init_input_norm()
        if config.method == "sum_rnn":
            # "sum_rnn" is the MLP step under Arctic's layout: one implementation of it.
            build_mlp_modules(self, config)
            self.reset_parameters()
            return
        c = config
        d = c.inner_dim
        n_shared = unique_count(c.n_predict, c.tie_weights)
        n_proj = unique_count(c.n_predict, c.tie_weights, proj=True)
        emb_width = d if c.tie_lstm_embs else 4 * d
        self.emb = nn.ModuleList(nn.Embedding(c.vocab_size, emb_width) for _ in range(n_shared))
        self.proj = nn.ModuleList(
            nn.Linear(c.hidden_size if j == 0 else d, 4 * d, bias=False) for j in range(n_proj)
        )
        self.cell_ln = nn.ModuleList(SpeculatorNorm(d, c.norm_eps) for _ in range(n_shared))
        self.state_ln = nn.ModuleList(SpeculatorNorm(d, c.norm_eps) for _ in range(n_shared))
        self.head = nn.ModuleList(nn.Linear(d, c.vocab_size, bias=False) for _ in range(n_shared))
        self.reset_parameters()

    def initial_state(self, hidden: torch.Tensor) -> State:
        x = self._scaled_input(hidden)
        if self.config.method == "sum_rnn":
            return x, None
        cell = x.new_zeros(x.shape[0], self.config.inner_dim)  # (B, D)
        return x, cell

    def step(
        self, head: int, state: torch.Tensor, cell: torch.Tensor | None, tokens: torch.Tensor
    ) -> State:
        if self.config.method == "sum_rnn":
            return mlp_step(self, head, state, tokens), cell
        assert cell is not None
        tie = self.config.tie_weights
        j = tied_index(head, tie)
        d = self.config.inner_dim
        z = self.emb[j](tokens)  # (B, D) or (B, 4D)
        x = self.proj[tied_proj_index(head, tie)](state)  # (B, 4D)
        if self.config.tie_lstm_embs:
            # The same token signal enters every gate: broadcast over the 4 gate blocks.
            z = z.unsqueeze(1)  # (B, 1, D)
            x = x.view(-1, 4, d)  # (B, 4, D)
        x = torch.add(x, z, alpha=self.config.emb_scale).view(-1, 4 * d)  # (B, 4D)
        gates = torch.sigmoid(x[:, : 3 * d])
        forget, inp, out = gates[:, :d], gates[:, d : 2 * d], gates[:, 2 * d :]
        candidate = F.gelu(self.cell_ln[j](x[:, 3 * d :]))
        cell = forget * cell + inp * candidate
        state = F.gelu(self.state_ln[j](cell)) * out
        return state, cell
