"""Lossless speculative rejection sampling of path drafts against the target distribution.

Leviathan et al. 2023 (arXiv 2211.17192, Algorithm 1) and Chen et al. 2023 (arXiv
2302.01318): draft token x_i, sampled from q_i, is accepted with probability
min(1, p_i(x_i) / q_i(x_i)); at the first rejection the output token is sampled from
norm(max(0, p_i - q_i)) instead, and when every draft token is accepted a bonus token is
sampled from p_n. Every emitted token is then distributed exactly as sampling from the
target p alone.

A deterministic draft (suffix match, greedy drafter) is a draft whose q_i is one-hot at x_i,
so the same rule becomes: accept x_i with probability p_i(x_i), and on rejection sample from
p_i with x_i removed, renormalised. Treating such a draft as if it were sampled from p (the
tempting shortcut "accept with probability 1 when p_i(x_i) is the largest") is not lossless.

The target distributions p are final: temperature, top-k and top-p are applied by the
caller before they reach this module.
"""

from __future__ import annotations

import torch

from ..draft import Draft
from ..exceptions import DraftShapeError, TargetShapeError, TensorDtypeError
from .verify_greedy import (
    PAD_TOKEN,
    check_integer_tensors,
    check_num_draft_range,
    draft_batch_shape,
)


def verify_sampling(
    draft_tokens: torch.Tensor,
    num_draft: torch.Tensor,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rejection-sample a batch of padded path drafts against the target distributions.

    Args:
        draft_tokens: (B, K) integer; row b's draft is ``[:num_draft[b]]``, the rest padding.
        num_draft: (B,) integer in ``[0, K]``.
        target_probs: (B, K+1, V) floating; ``[b, i]`` is the target distribution after the
            request's last token and ``draft_tokens[b, :i]``. Rows must be distributions.
        draft_probs: (B, K, V) floating, ``[b, i]`` the distribution ``draft_tokens[b, i]``
            was sampled from; None when every draft is deterministic. To mix deterministic
            and sampled drafts in one batch, give the deterministic rows one-hot ``q``.
        generator: the only source of randomness, on ``target_probs``'s device; the same
            generator state and inputs give the same outputs.

    Returns:
        num_accepted: (B,) long, in ``[0, num_draft]``.
        output_tokens: (B, K+1) long; ``[:num_output]`` are the accepted draft tokens and then
            the resampled or bonus token, the rest is ``PAD_TOKEN`` (-1).
        num_output: (B,) long, ``num_accepted + 1``.
    """
    _check_inputs(draft_tokens, num_draft, target_probs, draft_probs)
    batch, max_draft = draft_tokens.shape
    vocab = target_probs.shape[-1]
    device = target_probs.device
    # float32 whatever the input dtype, so that neither the comparison with torch.rand's
    # float32 draws nor torch.multinomial depends on the caller's precision.
    target = target_probs.float()
    draft = None if draft_probs is None else draft_probs.float()

    in_draft = torch.arange(max_draft, device=device) < num_draft[:, None]  # (B, K)
    # Padding may hold any value; 0 keeps the gathers below in range and is never emitted.
    tokens = torch.where(in_draft, draft_tokens.long(), 0)  # (B, K)
    p_x = target[:, :max_draft].gather(2, tokens[..., None]).squeeze(2)  # (B, K)
    q_x = torch.ones_like(p_x) if draft is None else draft.gather(2, tokens[..., None]).squeeze(2)
    uniform = torch.rand((batch, max_draft), generator=generator, device=device)  # (B, K)
    # u < p/q without the division, so q_x = 0 cannot produce inf or nan.
    accepted = (uniform * q_x < p_x) & in_draft  # (B, K)
    num_accepted = accepted.long().cumprod(dim=1).sum(dim=1)  # (B,) prefix up to first reject

    stop = num_accepted[:, None, None].expand(batch, 1, vocab)  # (B, 1, V)
    p_stop = target.gather(1, stop).squeeze(1)  # (B, V)
    rejected = num_accepted < num_draft  # (B,) False: all accepted, sample the bonus from p
    # q at the rejected position (clamped index: rows that accepted everything ignore it).
    stop_q = num_accepted.clamp(max=max(max_draft - 1, 0))  # (B,)
    if max_draft == 0:
        q_stop = torch.zeros_like(p_stop)
    elif draft is None:
        rejected_token = tokens.gather(1, stop_q[:, None]).squeeze(1)  # (B,)
        q_stop = torch.nn.functional.one_hot(rejected_token, vocab).float()
    else:
        q_stop = draft.gather(1, stop_q[:, None, None].expand(batch, 1, vocab)).squeeze(1)
    q_stop = torch.where(rejected[:, None], q_stop, 0.0)  # (B, V)
    residual = (p_stop - q_stop).clamp(min=0.0)  # (B, V)
    # A rejection where p <= q everywhere has probability 0 in exact arithmetic; rounding can
    # still produce one, and p is then the least biased fallback.
    empty = residual.sum(dim=1, keepdim=True) <= 0.0
    residual = torch.where(empty, p_stop, residual)
    last = torch.multinomial(residual, 1, generator=generator).squeeze(1)  # (B,)

    positions = torch.arange(max_draft + 1, device=device)[None, :]  # (1, K+1)
    padded = torch.cat([tokens, torch.zeros_like(tokens[:, :1])], dim=1)  # (B, K+1)
    output_tokens = torch.where(positions < num_accepted[:, None], padded, PAD_TOKEN)
    output_tokens = torch.where(positions == num_accepted[:, None], last[:, None], output_tokens)
    return num_accepted, output_tokens, num_accepted + 1


def verify_sampling_draft(
    draft: Draft, target_probs: torch.Tensor, generator: torch.Generator
) -> tuple[int, tuple[int, ...]]:
    """`verify_sampling` for one path draft, using ``draft.probs`` as q (None: deterministic).

    Args:
        draft: a path draft (``is_tree`` False).
        target_probs: (n+1, V) target distributions after the last token and each prefix.

    Returns:
        The number of accepted draft tokens and the emitted tokens (accepted, then one more).
    """
    if draft.is_tree:
        raise DraftShapeError(
            "rejection sampling verifies path drafts only; verify trees greedily with "
            "accept_tree, or pass one root-to-leaf path of the tree as a Draft.path"
        )
    num_nodes = len(draft)
    device = target_probs.device
    tokens = torch.tensor([draft.token_ids], dtype=torch.long, device=device).reshape(1, -1)
    draft_probs = None if draft.probs is None else draft.probs.to(device)[None]
    num_accepted, output, _ = verify_sampling(
        tokens,
        torch.tensor([num_nodes], device=device),
        target_probs[None],
        draft_probs,
        generator,
    )
    accepted = int(num_accepted[0])
    return accepted, tuple(int(t) for t in output[0, : accepted + 1])


def _check_inputs(
    draft_tokens: torch.Tensor,
    num_draft: torch.Tensor,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
) -> None:
    check_integer_tensors(("draft_tokens", draft_tokens), ("num_draft", num_draft))
    for name, probs in (("target_probs", target_probs), ("draft_probs", draft_probs)):
        if probs is not None and not probs.is_floating_point():
            raise TensorDtypeError(
                f"{name} must be floating-point probabilities, got {probs.dtype}"
            )
    batch, max_draft = draft_batch_shape(draft_tokens, num_draft)
    if target_probs.dim() != 3 or tuple(target_probs.shape[:2]) != (batch, max_draft + 1):
        raise TargetShapeError(
            f"target_probs must be ({batch}, {max_draft + 1}, vocab): one distribution per "
            f"draft position plus the bonus position, got {tuple(target_probs.shape)}"
        )
    vocab = target_probs.shape[2]
    if vocab == 0:
        raise TargetShapeError("target_probs has an empty vocabulary (last dimension 0)")
    if draft_probs is not None and tuple(draft_probs.shape) != (batch, max_draft, vocab):
        raise DraftShapeError(
            f"draft_probs must be ({batch}, {max_draft}, {vocab}) like the draft tokens and "
            f"the target vocabulary, got {tuple(draft_probs.shape)}"
        )
    if batch == 0:
        return
    check_num_draft_range(num_draft, max_draft)
    in_draft = torch.arange(max_draft, device=draft_tokens.device) < num_draft[:, None]
    out_of_vocab = in_draft & ((draft_tokens < 0) | (draft_tokens >= vocab))
    if bool(out_of_vocab.any()):
        row, col = (int(i) for i in torch.nonzero(out_of_vocab)[0])
        raise DraftShapeError(
            f"draft_tokens[{row}, {col}] = {int(draft_tokens[row, col])} is outside the "
            f"target vocabulary [0, {vocab})"
        )
