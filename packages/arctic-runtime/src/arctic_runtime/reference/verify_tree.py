"""Tree verification: one target pass over a whole draft tree, then the longest accepted path.

All the tree's nodes are scored by a single forward pass, each attending only to its own
ancestors (SpecInfer, Miao et al. 2024, arXiv 2305.09781; Medusa, Cai et al. 2024, arXiv
2401.10774). A path draft is the tree whose node i has parent i-1, so everything here also
verifies paths, with the same result as `verify_greedy`.

Layout of the target pass (n draft nodes, a KV cache holding ``past`` tokens):

    query row 0        the root: the request's last token, not yet in the cache
    query row 1 + i    draft node i
    key column j < past            a cached token: visible to every query row
    key column past + 0            the root: visible to every query row
    key column past + 1 + i        node i: visible to node i and to its descendants only
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..draft import Draft
from ..exceptions import TargetShapeError, TensorDtypeError, VerifyInputError


@dataclass(frozen=True)
class TreeInputs:
    """The new tokens of one tree-verification pass, root first, then the draft nodes."""

    input_ids: torch.Tensor  # (1+n,) long: the request's last token, then the draft tokens
    position_ids: torch.Tensor  # (1+n,) long: start_position + depth (root depth 0)
    # (1+n, 1+n) bool; [i, j] True: new token i may attend to new token j (itself, its
    # ancestors, and the root).
    tree_mask: torch.Tensor
    start_position: int  # the root's position: the number of tokens before it

    def attention_mask(
        self, past_length: int | None = None, dtype: torch.dtype = torch.bool
    ) -> torch.Tensor:
        """The (1, 1, 1+n, past_length+1+n) mask for a transformers model with a KV cache.

        transformers (5.x, ``masking_utils._preprocess_mask_arguments``) passes a 4D
        ``attention_mask`` to the attention kernels unchanged, so this must already be in the
        kernel's form: ``torch.bool`` (True = attend) suits ``sdpa``; a floating dtype gives an
        additive mask (0 = attend, ``finfo(dtype).min`` = masked), which ``eager`` needs
        because it adds the mask to the scores. ``past_length`` defaults to
        ``start_position``: a cache holding exactly the tokens before the root.
        """
        past = self.start_position if past_length is None else past_length
        if past < 0:
            raise VerifyInputError(f"past_length must be >= 0 (tokens in the KV cache), got {past}")
        if dtype != torch.bool and not dtype.is_floating_point:
            raise TensorDtypeError(
                f"dtype must be torch.bool or a floating dtype for an additive mask, got {dtype}"
            )
        num_new = self.tree_mask.shape[0]
        past_visible = torch.ones(num_new, past, dtype=torch.bool, device=self.tree_mask.device)
        visible = torch.cat([past_visible, self.tree_mask], dim=1)  # (1+n, past+1+n)
        if dtype != torch.bool:
            device = visible.device
            hidden = torch.full(visible.shape, torch.finfo(dtype).min, dtype=dtype, device=device)
            visible = torch.where(visible, torch.zeros((), dtype=dtype, device=device), hidden)
        return visible[None, None]


def build_tree_inputs(draft: Draft, last_token: int, start_position: int) -> TreeInputs:
    """Token ids, position ids and tree mask for verifying ``draft`` in one target pass.

    ``start_position`` is the position of ``last_token`` (the root), i.e. how many tokens of
    the request come before it; a node at depth d (depth-1 nodes follow the root) gets
    position ``start_position + d``, the position it would have in its own sequence. Pass
    ``position_ids`` to the model explicitly: a model that derives positions from the cache
    length numbers the new tokens consecutively, which is wrong for siblings.
    """
    if last_token < 0:
        raise VerifyInputError(f"last_token must be a token id >= 0, got {last_token}")
    if start_position < 0:
        raise VerifyInputError(f"start_position must be >= 0, got {start_position}")
    ancestors = _ancestor_matrix(_parents(draft))  # (n, n)
    num_nodes = len(draft)
    depth = ancestors.sum(dim=1)  # (n,) depth-1 nodes have only themselves

    tree_mask = torch.zeros(1 + num_nodes, 1 + num_nodes, dtype=torch.bool)
    tree_mask[:, 0] = True  # everything follows the root
    tree_mask[1:, 1:] = ancestors
    input_ids = torch.tensor((last_token, *draft.token_ids), dtype=torch.long)
    position_ids = start_position + torch.cat([torch.zeros(1, dtype=torch.long), depth])
    return TreeInputs(input_ids, position_ids, tree_mask, start_position)


def accept_tree(
    draft: Draft, target_argmax_per_node: torch.Tensor | Sequence[int]
) -> tuple[tuple[int, ...], int]:
    """The longest root-to-node path of ``draft`` that the target's argmax agrees with.

    Args:
        draft: a path or tree draft.
        target_argmax_per_node: (1+n,) the target's argmax at the root (index 0) and after
            each node i (index 1+i), e.g. the argmax of the tree pass's logits.

    Returns:
        The accepted node indices from the root down (empty when no depth-1 node matches),
        and the bonus token: the target's argmax after the last accepted node.

    A node is accepted when its token equals the argmax at its parent and its parent is
    accepted. Among equally deep accepted nodes the one with the smallest index wins (for
    breadth- or depth-first node orders that is also the lexicographically first path). The
    choice cannot change the emitted tokens: every accepted token is the argmax given the
    tokens before it, so all deepest accepted paths spell the same tokens.
    """
    num_nodes = len(draft)
    argmax = torch.as_tensor(target_argmax_per_node)
    if argmax.is_floating_point() or argmax.dtype == torch.bool:
        raise TensorDtypeError(f"target_argmax_per_node must hold token ids, got {argmax.dtype}")
    if tuple(argmax.shape) != (1 + num_nodes,):
        raise TargetShapeError(
            f"target_argmax_per_node must be ({1 + num_nodes},): the root's argmax, then one "
            f"per draft node, got {tuple(argmax.shape)}"
        )
    argmax = argmax.long().cpu()
    if num_nodes == 0:
        return (), int(argmax[0])

    parents = torch.tensor(_parents(draft), dtype=torch.long)  # (n,)
    tokens = torch.tensor(draft.token_ids, dtype=torch.long)  # (n,)
    ancestors = _ancestor_matrix(_parents(draft))  # (n, n)
    matches = tokens == argmax[parents + 1]  # (n,) each node against its own parent only
    # A node is on an accepted path when it and all its ancestors match.
    accepted = ~(ancestors & ~matches[None, :]).any(dim=1)  # (n,)
    depth = torch.where(accepted, ancestors.sum(dim=1), 0)  # (n,)
    deepest = int(torch.argmax(depth))  # torch.argmax returns the first maximum
    if int(depth[deepest]) == 0:
        return (), int(argmax[0])
    # Ancestors have smaller indices than their descendants, so index order is path order.
    path = tuple(int(i) for i in torch.nonzero(ancestors[deepest]).flatten())
    return path, int(argmax[1 + deepest])


def _parents(draft: Draft) -> tuple[int, ...]:
    return tuple(range(-1, len(draft) - 1)) if draft.parents is None else draft.parents


def _ancestor_matrix(parents: tuple[int, ...]) -> torch.Tensor:
    """(n, n) bool; [i, j] True when node j is node i or one of its ancestors."""
    num_nodes = len(parents)
    # Pointer doubling: after step k each row holds its 2^k nearest ancestors-or-self and
    # `jump` points 2^k levels up; row n is a sentinel "above the root" with no ancestors.
    ancestors = torch.zeros(num_nodes + 1, num_nodes, dtype=torch.bool)
    ancestors[:num_nodes] = torch.eye(num_nodes, dtype=torch.bool)
    jump = torch.tensor([*(p if p >= 0 else num_nodes for p in parents), num_nodes])
    for _ in range(math.ceil(math.log2(num_nodes + 1))):
        ancestors = ancestors | ancestors[jump]
        jump = jump[jump]
    return ancestors[:num_nodes]
