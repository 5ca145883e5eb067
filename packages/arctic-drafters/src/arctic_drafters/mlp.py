"""IBM's MLPSpeculator (Wertheimer et al., arXiv 2404.19124), as served by Arctic Inference."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig
from .layers import SpeculatorNorm, tied_index, tied_proj_index, unique_count
from .speculator import Speculator, State


class MLPSpeculator(Speculator):
    """Head i: ``state = GELU(LN_i(proj_i(state) + a * emb_i(token)))``, logits = head_i(state).

    Stored modules: ``emb.j`` (V, D), ``proj.j`` (D, H for j=0 else D, D), ``ln.j``, ``head.j``
    (V, D); under ``tie_weights`` one emb/ln/head and two projections.
    """

    def __init__(self, config: MLPSpeculatorConfig | LSTMSpeculatorConfig) -> None:
        super().__init__()
        if isinstance(config, LSTMSpeculatorConfig) and config.method != "sum_rnn":
            raise ValueError(f"MLPSpeculator runs method 'sum_rnn' only, got {config.method!r}")
        self.config = config
        build_mlp_modules(self, config)
        self._init_input_norm()
        self.reset_parameters()

    def initial_state(self, hidden: torch.Tensor) -> State:
        return self._scaled_input(hidden), None

    def step(
        self, head: int, state: torch.Tensor, cell: torch.Tensor | None, tokens: torch.Tensor
    ) -> State:
        return mlp_step(self, head, state, tokens), cell


def build_mlp_modules(module: Speculator, c: MLPSpeculatorConfig | LSTMSpeculatorConfig) -> None:
    """Adds the MLP step's ``emb``, ``proj``, ``ln`` and ``head`` lists to ``module``."""
    n_shared = unique_count(c.n_predict, c.tie_weights)
    n_proj = unique_count(c.n_predict, c.tie_weights, proj=True)
    module.emb = nn.ModuleList(nn.Embedding(c.vocab_size, c.inner_dim) for _ in range(n_shared))
    module.proj = nn.ModuleList(
        nn.Linear(c.hidden_size if j == 0 else c.inner_dim, c.inner_dim, bias=False)
        for j in range(n_proj)
    )
    module.ln = nn.ModuleList(SpeculatorNorm(c.inner_dim, c.norm_eps) for _ in range(n_shared))
    module.head = nn.ModuleList(
        nn.Linear(c.inner_dim, c.vocab_size, bias=False) for _ in range(n_shared)
    )


def mlp_step(
    module: Speculator, head: int, state: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """One head of arXiv 2404.19124: (B, H or D) state, (B,) tokens -> (B, D) state."""
    tie = module.config.tie_weights
    j = tied_index(head, tie)
    emb, proj, ln = _modules(module, "emb"), _modules(module, "proj"), _modules(module, "ln")
    z = emb[j](tokens)  # (B, D)
    x = proj[tied_proj_index(head, tie)](state) + module.config.emb_scale * z
    return F.gelu(ln[j](x))


def _modules(module: nn.Module, name: str) -> nn.ModuleList:
    found = getattr(module, name)
    assert isinstance(found, nn.ModuleList)
    return found
