"""A small MLP-speculator-like drafter (arXiv 2404.19124) for the FP8 tests.

arctic-drafters' real heads are not a dependency of this package; quantize_drafter only
needs module names, so a stand-in with the same layout (emb / proj / ln / head lists) shows
the behaviour.
"""

from __future__ import annotations

import math

import torch

from arctic_kernels import SpeculatorLayerNorm


class TinyMLPSpeculator(torch.nn.Module):
    def __init__(
        self, vocab: int = 2048, emb_dim: int = 128, inner: int = 128, n_predict: int = 3
    ) -> None:
        super().__init__()
        self.n_predict = n_predict
        self.state_weight = 0.5 ** (0.5 / n_predict)
        self.emb_weight = math.sqrt((1 - self.state_weight**2) * inner / 2)
        self.emb = torch.nn.ModuleList(torch.nn.Embedding(vocab, inner) for _ in range(n_predict))
        self.proj = torch.nn.ModuleList(
            torch.nn.Linear(emb_dim if i == 0 else inner, inner, bias=False)
            for i in range(n_predict)
        )
        self.ln = torch.nn.ModuleList(SpeculatorLayerNorm(inner) for _ in range(n_predict))
        self.head = torch.nn.ModuleList(
            torch.nn.Linear(inner, vocab, bias=False) for _ in range(n_predict)
        )
        for lin in (*self.proj, *self.head):
            torch.nn.init.normal_(lin.weight, std=lin.in_features**-0.5)

    def forward(self, state: torch.Tensor, token: torch.Tensor) -> list[torch.Tensor]:
        """Greedy chain: head i takes the argmax of head i-1. Returns n_predict (B, V) logits."""
        logits = []
        for i in range(self.n_predict):
            z = self.proj[i](state) * self.state_weight + self.emb[i](token) * self.emb_weight
            state = torch.nn.functional.gelu(self.ln[i](z))  # (B, inner)
            logits.append(self.head[i](state))
            token = logits[-1].argmax(-1)
        return logits


@torch.no_grad()
def fit_prototype_heads(
    drafter: TinyMLPSpeculator, prototypes: torch.Tensor, sharpness: float
) -> None:
    """Make `drafter` behave like a trained one, without training (which is slow on a CPU).

    Hidden states are assumed to cluster around one prototype per token (prototypes: (V,
    emb_dim)); head i's row for token t is set to the normalised state the chain reaches from
    prototype t, i.e. the nearest-class-mean classifier that cross-entropy training
    approaches. `sharpness` is the logit scale (a trained head's logits span ~10-20).
    """
    state = prototypes.float()
    token = torch.arange(prototypes.shape[0])
    for i in range(drafter.n_predict):
        z = (
            drafter.proj[i](state) * drafter.state_weight
            + drafter.emb[i](token) * drafter.emb_weight
        )
        state = torch.nn.functional.gelu(drafter.ln[i](z))  # (V, inner)
        rows = state - state.mean(dim=0, keepdim=True)  # the shared part carries no class
        drafter.head[i].weight.copy_(sharpness * rows / rows.norm(dim=-1, keepdim=True))


def prototype_drafter() -> tuple[TinyMLPSpeculator, torch.Tensor]:
    """A bf16 drafter fitted to random prototype states (`fit_prototype_heads`, vocab 2048,
    width 128), and the (2048, 128) prototypes."""
    torch.manual_seed(0)
    drafter = TinyMLPSpeculator(vocab=2048, emb_dim=128, inner=128, n_predict=3)
    for emb in drafter.emb:
        torch.nn.init.normal_(emb.weight, std=0.02)
    prototypes = torch.randn(2048, 128)
    fit_prototype_heads(drafter, prototypes, sharpness=10.0)
    return drafter.to(torch.bfloat16).eval(), prototypes


def states_near(
    prototypes: torch.Tensor, noise: float, batch: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(bf16 states around the prototypes of random tokens, random last tokens, those
    tokens): `noise` sets how often the drafter is wrong."""
    gen = torch.Generator().manual_seed(seed)
    vocab, width = prototypes.shape
    target = torch.randint(0, vocab, (batch,), generator=gen)
    state = prototypes[target] + noise * torch.randn(batch, width, generator=gen)
    token = torch.randint(0, vocab, (batch,), generator=gen)
    return state.to(torch.bfloat16), token, target


class TinySpeculator(TinyMLPSpeculator):
    """The stand-in with arctic-drafters' ``Speculator`` interface, what
    `arctic_kernels.agreement` calls: ``forward`` is teacher-forced, ``propose`` greedy."""

    def _step(self, i: int, state: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        z = self.proj[i](state) * self.state_weight + self.emb[i](token) * self.emb_weight
        return torch.nn.functional.gelu(self.ln[i](z))  # (B, inner)

    def forward(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """(B, H) states, (B, k) tokens (head i reads tokens[:, i]) -> (k, B, V) logits."""
        logits = []
        for i in range(tokens.shape[1]):
            state = self._step(i, state, tokens[:, i])
            logits.append(self.head[i](state))
        return torch.stack(logits)

    @torch.no_grad()
    def propose(self, state: torch.Tensor, last: torch.Tensor, n: int) -> torch.Tensor:
        """(B, H) states, (B,) last tokens -> (B, n) greedy drafts."""
        token, out = last, []
        for i in range(n):
            state = self._step(i, state, token)
            token = self.head[i](state).argmax(-1)
            out.append(token)
        return torch.stack(out, 1)
