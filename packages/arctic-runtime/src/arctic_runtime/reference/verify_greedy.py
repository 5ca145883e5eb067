"""Greedy verification of a batch of path drafts against the target's argmax tokens.

With greedy decoding, speculation is lossless exactly when every emitted token is the
target's argmax given everything before it (Leviathan et al. 2023, arXiv 2211.17192, with
temperature 0): accept the longest draft prefix that agrees with the argmax, then emit the
argmax at the first disagreement (or after the last draft token) as the bonus token.
"""

from __future__ import annotations

import torch

from ..exceptions import DraftShapeError, TargetShapeError, TensorDtypeError

# Output positions past ``num_output`` hold this, so that a caller reading too far sees an
# impossible token id instead of a plausible stale one.
PAD_TOKEN = -1


def verify_greedy(
    draft_tokens: torch.Tensor,
    num_draft: torch.Tensor,
    target_argmax: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accept each request's longest draft prefix that equals the target's argmax.

    Args:
        draft_tokens: (B, K) integer; row b holds its draft in ``[:num_draft[b]]``, the rest
            is padding and never read as a draft token.
        num_draft: (B,) integer in ``[0, K]``.
        target_argmax: (B, K+1) integer; ``target_argmax[b, i]`` is the target's argmax after
            the request's last token and ``draft_tokens[b, :i]``.

    Returns:
        num_accepted: (B,) long, in ``[0, num_draft]``.
        output_tokens: (B, K+1) long; ``[:num_output]`` are the accepted draft tokens and then
            the bonus token, the rest is ``PAD_TOKEN`` (-1).
        num_output: (B,) long, ``num_accepted + 1``.
    """
    _check_inputs(draft_tokens, num_draft, target_argmax)
    batch, max_draft = draft_tokens.shape
    device = draft_tokens.device
    target_argmax = target_argmax.long()

    in_draft = torch.arange(max_draft, device=device) < num_draft[:, None]  # (B, K)
    matches = (draft_tokens.long() == target_argmax[:, :max_draft]) & in_draft  # (B, K)
    # The accepted prefix ends at the first mismatch: cumprod turns every position after it
    # to 0, so the row sum is the prefix length.
    num_accepted = matches.long().cumprod(dim=1).sum(dim=1)  # (B,)

    # Accepted draft tokens equal the argmax at their positions, and the bonus token is the
    # argmax at position num_accepted, so the output is the argmax row up to num_accepted.
    positions = torch.arange(max_draft + 1, device=device)  # (K+1,)
    keep = positions[None, :] <= num_accepted[:, None]  # (B, K+1)
    output_tokens = torch.where(keep, target_argmax, torch.full_like(target_argmax, PAD_TOKEN))
    assert output_tokens.shape == (batch, max_draft + 1)
    return num_accepted, output_tokens, num_accepted + 1


def _check_inputs(
    draft_tokens: torch.Tensor, num_draft: torch.Tensor, target_argmax: torch.Tensor
) -> None:
    check_integer_tensors(
        ("draft_tokens", draft_tokens), ("num_draft", num_draft), ("target_argmax", target_argmax)
    )
    batch, max_draft = draft_batch_shape(draft_tokens, num_draft)
    if tuple(target_argmax.shape) != (batch, max_draft + 1):
        raise TargetShapeError(
            f"target_argmax must be ({batch}, {max_draft + 1}): one argmax per draft position "
            f"plus the bonus position, got {tuple(target_argmax.shape)}"
        )
    if batch:
        check_num_draft_range(num_draft, max_draft)


# Checks shared with verify_sampling.


def check_integer_tensors(*named: tuple[str, torch.Tensor]) -> None:
    for name, tensor in named:
        if tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool:
            raise TensorDtypeError(
                f"{name} must hold integer token ids or counts, got {tensor.dtype}"
            )


def draft_batch_shape(draft_tokens: torch.Tensor, num_draft: torch.Tensor) -> tuple[int, int]:
    """(batch, max_draft) of padded drafts, after checking num_draft has one count each."""
    if draft_tokens.dim() != 2:
        raise DraftShapeError(
            f"draft_tokens must be (batch, max_draft), got {tuple(draft_tokens.shape)}"
        )
    batch, max_draft = draft_tokens.shape
    if tuple(num_draft.shape) != (batch,):
        raise DraftShapeError(
            f"num_draft must be ({batch},) for {batch} requests, got {tuple(num_draft.shape)}"
        )
    return batch, max_draft


def check_num_draft_range(num_draft: torch.Tensor, max_draft: int) -> None:
    # One host sync; the caller needs num_accepted on the host right after anyway.
    if bool(((num_draft < 0) | (num_draft > max_draft)).any()):
        raise DraftShapeError(
            f"num_draft must lie in [0, {max_draft}] (the padded draft width), "
            f"got {num_draft.tolist()}"
        )
