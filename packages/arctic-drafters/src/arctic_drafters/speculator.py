"""What both drafter families share: the draft loop, top-k drafts and teacher forcing.

Every method here has static shapes and no data-dependent Python control flow (the head loop
runs over a Python int fixed at call time), so a draft call can be captured by
``torch.compile(fullgraph=True)`` or as one CUDA graph per batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from .config import SpeculatorConfig
from .layers import SpeculatorNorm, tied_index

SQRT2 = math.sqrt(2.0)

State = tuple[torch.Tensor, torch.Tensor | None]


class Speculator(nn.Module):
    """Base class; subclasses define ``step`` (one head's state update)."""

    config: SpeculatorConfig
    head: nn.ModuleList

    def _init_input_norm(self) -> None:
        # Unparameterised, as in the anchor: only the scale of the incoming state is fixed.
        self.input_norm = SpeculatorNorm(
            self.config.hidden_size, self.config.norm_eps, affine=False
        )

    def reset_parameters(self) -> None:
        """arXiv 2404.19124's init: N(0, 1/sqrt(inner_dim)) matrices, unit norms."""
        std = 1.0 / math.sqrt(self.config.inner_dim)
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, SpeculatorNorm) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    # -- to be provided by subclasses -------------------------------------------------------
    def initial_state(self, hidden: torch.Tensor) -> State:
        raise NotImplementedError

    def step(
        self, head: int, state: torch.Tensor, cell: torch.Tensor | None, tokens: torch.Tensor
    ) -> State:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def _scaled_input(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.config.scale_input:
            scaled: torch.Tensor = self.input_norm(hidden) / SQRT2
            return scaled
        return hidden

    def head_logits(self, head: int, state: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N, V)
        logits: torch.Tensor = self.head[tied_index(head, self.config.tie_weights)](state)
        return logits

    def _check_heads(self, n: int) -> None:
        if not 1 <= n <= self.config.n_predict:
            raise ValueError(f"n must be in 1..n_predict={self.config.n_predict}, got {n}")

    def _check_inputs(self, hidden: torch.Tensor, tokens: torch.Tensor) -> None:
        if hidden.dim() != 2 or hidden.shape[1] != self.config.hidden_size:
            raise ValueError(
                f"hidden_states must be (B, {self.config.hidden_size}), got {tuple(hidden.shape)}"
            )
        if tokens.shape[0] != hidden.shape[0]:
            raise ValueError(
                f"batch sizes differ: hidden_states {hidden.shape[0]}, tokens {tokens.shape[0]}"
            )

    def forward(self, hidden_states: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits for training.

        ``hidden_states`` (N, H): the target's final-norm state at position t; ``tokens``
        (N, k): the tokens at t+1 .. t+k (head i reads token t+1+i and predicts t+2+i).
        Returns (k, N, V).
        """
        self._check_inputs(hidden_states, tokens)
        k = tokens.shape[1]
        self._check_heads(k)
        state, cell = self.initial_state(hidden_states)
        out = []
        for i in range(k):
            state, cell = self.step(i, state, cell, tokens[:, i])
            out.append(self.head_logits(i, state))
        return torch.stack(out, 0)

    @torch.no_grad()
    def propose(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int
    ) -> torch.Tensor:
        """Greedy draft: (B, H) states and (B,) last sampled tokens -> (B, n) tokens."""
        self._check_inputs(hidden_states, last_tokens)
        self._check_heads(n)
        state, cell = self.initial_state(hidden_states)
        tokens = last_tokens
        out = []
        for i in range(n):
            state, cell = self.step(i, state, cell, tokens)
            tokens = self.head_logits(i, state).argmax(-1)  # (B,)
            out.append(tokens)
        return torch.stack(out, 1)

    @torch.no_grad()
    def propose_sampled(
        self,
        hidden_states: torch.Tensor,
        last_tokens: torch.Tensor,
        n: int,
        temperatures: torch.Tensor,
        generators: Sequence[torch.Generator | None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled draft for speculative sampling (arXiv 2211.17192): head i draws token i+1
        from q_i = softmax(logits_i / T) and the next head reads that token. Rows with
        T == 0 take the argmax and a one-hot q. Returns ``(tokens, probs)``: (B, n) and the
        (B, n, V) float32 distributions the tokens were drawn from, which the verifier
        needs to stay lossless. ``generators[b]`` draws row b (None: torch's default)."""
        self._check_inputs(hidden_states, last_tokens)
        self._check_heads(n)
        batch = hidden_states.shape[0]
        if temperatures.shape != (batch,):
            raise ValueError(f"temperatures must be ({batch},), got {tuple(temperatures.shape)}")
        if not bool((temperatures >= 0).all()):
            raise ValueError(f"temperatures must be >= 0, got {temperatures.tolist()}")
        if generators is not None and len(generators) != batch:
            raise ValueError(f"{len(generators)} generators for a batch of {batch}")
        temperatures = temperatures.to(hidden_states.device, torch.float32)
        sampled = temperatures > 0
        scale = torch.where(sampled, temperatures, torch.ones_like(temperatures)).unsqueeze(1)
        # Every row draws n_predict uniforms per call, whatever n is: a seeded request's
        # stream must not depend on the other rows (n is the batch's longest draft).
        uniforms = 1.0 - _uniforms(batch, self.config.n_predict, generators, hidden_states.device)
        state, cell = self.initial_state(hidden_states)
        tokens = last_tokens
        out_tokens, out_probs = [], []
        for i in range(n):
            state, cell = self.step(i, state, cell, tokens)
            logits = self.head_logits(i, state).float()  # (B, V)
            greedy = logits.argmax(-1)
            probs = torch.softmax(logits / scale, dim=-1)
            # Inverse-CDF draw with u in (0, total]: a token of zero mass is never drawn.
            cdf = probs.cumsum(-1)
            u = uniforms[:, i]  # (B,) in (0, 1]
            drawn = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1)).squeeze(1)
            drawn = drawn.clamp_(max=probs.shape[1] - 1)
            probs = probs / cdf[:, -1:]  # exactly the distribution the draw used
            tokens = torch.where(sampled, drawn, greedy)
            one_hot = torch.nn.functional.one_hot(greedy, probs.shape[1]).to(probs.dtype)
            out_probs.append(torch.where(sampled.unsqueeze(1), probs, one_hot))
            out_tokens.append(tokens)
        return torch.stack(out_tokens, 1), torch.stack(out_probs, 1)

    @torch.no_grad()
    def propose_topk(
        self, hidden_states: torch.Tensor, last_tokens: torch.Tensor, n: int, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k per head for tree drafts: ``(tokens, log_probs)``, both (B, n, k), sorted by
        log-prob. The chain follows each head's top-1 token, as in vLLM's
        ``top_k_tokens_per_head`` (the anchor trains only that chain)."""
        self._check_inputs(hidden_states, last_tokens)
        self._check_heads(n)
        if not 1 <= k <= self.config.vocab_size:
            raise ValueError(f"k must be in 1..vocab_size={self.config.vocab_size}, got {k}")
        state, cell = self.initial_state(hidden_states)
        tokens = last_tokens
        out_tokens, out_logp = [], []
        for i in range(n):
            state, cell = self.step(i, state, cell, tokens)
            logp = torch.log_softmax(self.head_logits(i, state).float(), dim=-1)
            top_logp, top_tokens = logp.topk(k, dim=-1)  # (B, k)
            out_tokens.append(top_tokens)
            out_logp.append(top_logp)
            tokens = top_tokens[:, 0]
        return torch.stack(out_tokens, 1), torch.stack(out_logp, 1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _uniforms(
    batch: int,
    draws: int,
    generators: Sequence[torch.Generator | None] | None,
    device: torch.device,
) -> torch.Tensor:
    """(B, draws) U[0, 1) values, row b from ``generators[b]`` (one call per row: a seeded
    request's stream must not depend on what else is in the batch)."""
    if generators is None:
        return torch.rand(batch, draws, device=device)
    return torch.stack([torch.rand(draws, generator=g, device=device) for g in generators])
