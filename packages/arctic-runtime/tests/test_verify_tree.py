"""Tree verification: inputs of the one target pass, and the accepted path.

The mask and positions are checked against ancestor sets walked by hand and, end to end,
against a tiny random Llama: the tree pass on top of a KV cache must give every node the
logits of its own root-to-node sequence run alone.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from arctic_runtime.draft import SUFFIX, Draft
from arctic_runtime.exceptions import TargetShapeError, TensorDtypeError, VerifyInputError
from arctic_runtime.reference import accept_tree, build_tree_inputs, verify_greedy

VOCAB = 3  # small, so that siblings repeat tokens and many nodes match the argmax


def tree(tokens: list[int], parents: list[int]) -> Draft:
    return Draft(tuple(tokens), SUFFIX, 1.0, parents=tuple(parents))


def path_to(parents: tuple[int, ...], node: int) -> list[int]:
    """Node indices from the root's child down to ``node``, by walking parents."""
    path = []
    while node >= 0:
        path.append(node)
        node = parents[node]
    return path[::-1]


def brute_force_accept(draft: Draft, argmax: list[int]) -> tuple[tuple[int, ...], int]:
    """Every root-to-leaf path's accepted prefix; the longest, then the smallest end node."""
    parents = draft.parents if draft.parents is not None else tuple(range(-1, len(draft) - 1))
    leaves = [i for i in range(len(draft)) if i not in parents]
    best: tuple[int, ...] = ()
    for leaf in leaves:
        accepted: list[int] = []
        for node in path_to(parents, leaf):
            if draft.token_ids[node] != argmax[parents[node] + 1]:
                break
            accepted.append(node)
        if len(accepted) > len(best) or (
            accepted and len(accepted) == len(best) and accepted[-1] < best[-1]
        ):
            best = tuple(accepted)
    bonus = argmax[best[-1] + 1] if best else argmax[0]
    return best, bonus


@st.composite
def trees(draw: st.DrawFn) -> Draft:
    size = draw(st.integers(0, 10))
    parents = [draw(st.integers(-1, i - 1)) for i in range(size)]
    tokens = draw(st.lists(st.integers(0, VOCAB - 1), min_size=size, max_size=size))
    return tree(tokens, parents)


# A hand-built tree (root r = the request's last token):
#   r ─ 0:a ─ 2:b ─ 5:d
#   │       └ 3:c
#   └ 1:a ─ 4:c ─ 6:e ─ 7:f
HAND_TREE = tree([10, 10, 11, 12, 12, 13, 14, 15], [-1, -1, 0, 0, 1, 2, 4, 6])


def test_hand_built_tree() -> None:
    # argmax after: r, 0, 1, 2, 3, 4, 5, 6, 7
    argmax = [10, 11, 12, 20, 21, 14, 22, 99, 23]
    # 0→2 (b == argmax after 0) stops at 5 (d != 20); 1→4→6 (c, e) stops at 7 (f != 99).
    assert accept_tree(HAND_TREE, torch.tensor(argmax)) == ((1, 4, 6), 99)
    # If node 6 fails too, depth-2 paths 0→2 and 1→4 tie: the smaller end node (2) wins.
    argmax[5] = 0
    assert accept_tree(HAND_TREE, argmax) == ((0, 2), 20)
    # No depth-1 node matches the root's argmax: nothing accepted, the root's argmax is emitted.
    assert accept_tree(HAND_TREE, [7, *argmax[1:]]) == ((), 7)

    inputs = build_tree_inputs(HAND_TREE, last_token=42, start_position=100)
    assert inputs.input_ids.tolist() == [42, 10, 10, 11, 12, 12, 13, 14, 15]
    assert inputs.position_ids.tolist() == [100, 101, 101, 102, 102, 102, 103, 103, 104]
    assert inputs.tree_mask[8].tolist() == [
        True,
        False,
        True,
        False,
        False,
        True,
        False,
        True,
        True,
    ]
    assert inputs.tree_mask[0].tolist() == [True] + [False] * 8


@settings(max_examples=300, deadline=None)
@given(draft=trees(), data=st.data())
def test_accept_matches_brute_force(draft: Draft, data: st.DataObject) -> None:
    size = len(draft) + 1
    argmax = data.draw(st.lists(st.integers(0, VOCAB - 1), min_size=size, max_size=size))
    assert accept_tree(draft, torch.tensor(argmax)) == brute_force_accept(draft, argmax)


@settings(max_examples=100, deadline=None)
@given(draft=trees(), start=st.integers(0, 1000), last_token=st.integers(0, 50))
def test_inputs_follow_ancestor_sets(draft: Draft, start: int, last_token: int) -> None:
    assert draft.parents is not None
    inputs = build_tree_inputs(draft, last_token, start)
    n = len(draft)

    assert inputs.input_ids.tolist() == [last_token, *draft.token_ids]
    assert inputs.tree_mask.dtype == torch.bool and inputs.tree_mask.shape == (n + 1, n + 1)
    assert inputs.tree_mask[0].tolist() == [True] + [False] * n  # the root sees only itself
    assert inputs.position_ids[0] == start
    for i in range(n):
        visible = set(path_to(draft.parents, i))  # ancestors and itself
        assert inputs.position_ids[i + 1] == start + len(visible)
        assert inputs.tree_mask[i + 1, 0]  # every node follows the root
        assert {j for j in range(n) if inputs.tree_mask[i + 1, j + 1]} == visible

    past = 3
    mask = inputs.attention_mask(past_length=past)
    assert mask.shape == (1, 1, n + 1, past + n + 1)
    assert mask[0, 0, :, :past].all()  # the cached prefix is visible to every new token
    assert torch.equal(mask[0, 0, :, past:], inputs.tree_mask)
    additive = inputs.attention_mask(past_length=past, dtype=torch.float16)
    assert torch.equal(additive == 0, mask) and additive.dtype == torch.float16
    assert (additive[~mask] == torch.finfo(torch.float16).min).all()


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_path_agrees_with_verify_greedy(data: st.DataObject) -> None:
    tokens = data.draw(st.lists(st.integers(0, VOCAB - 1), max_size=8))
    argmax = data.draw(
        st.lists(st.integers(0, VOCAB - 1), min_size=len(tokens) + 1, max_size=len(tokens) + 1)
    )
    num_accepted, output, _ = verify_greedy(
        torch.tensor([tokens], dtype=torch.long).reshape(1, -1),
        torch.tensor([len(tokens)]),
        torch.tensor([argmax]),
    )
    accepted = int(num_accepted[0])

    for draft in (Draft.path(tokens, SUFFIX, 1.0), tree(tokens, list(range(-1, len(tokens) - 1)))):
        nodes, bonus = accept_tree(draft, argmax)
        assert nodes == tuple(range(accepted))
        assert [draft.token_ids[i] for i in nodes] + [bonus] == output[0, : accepted + 1].tolist()
        inputs = build_tree_inputs(draft, 7, 20)
        assert inputs.position_ids.tolist() == list(range(20, 21 + len(tokens)))
        assert torch.equal(
            inputs.tree_mask, torch.ones(len(tokens) + 1, len(tokens) + 1).tril().bool()
        )


def test_rejects_bad_inputs() -> None:
    with pytest.raises(TargetShapeError, match=r"must be \(9,\).*got \(8,\)"):
        accept_tree(HAND_TREE, torch.zeros(8, dtype=torch.long))
    with pytest.raises(TensorDtypeError, match=r"torch\.float32"):
        accept_tree(HAND_TREE, torch.zeros(9))
    with pytest.raises(VerifyInputError, match="start_position must be >= 0, got -1"):
        build_tree_inputs(HAND_TREE, 1, -1)
    with pytest.raises(VerifyInputError, match="last_token must be a token id >= 0, got -2"):
        build_tree_inputs(HAND_TREE, -2, 0)
    inputs = build_tree_inputs(HAND_TREE, 1, 0)
    with pytest.raises(VerifyInputError, match="past_length must be >= 0"):
        inputs.attention_mask(past_length=-1)
    with pytest.raises(TensorDtypeError, match=r"torch\.int64"):
        inputs.attention_mask(dtype=torch.long)


@pytest.mark.parametrize(
    ("attn_implementation", "mask_dtype"),
    [("sdpa", torch.bool), ("sdpa", torch.float32), ("eager", torch.float32)],
)
def test_tree_pass_matches_sequential_llama(
    attn_implementation: str, mask_dtype: torch.dtype
) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        attn_implementation=attn_implementation,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    prefix = torch.randint(0, 64, (1, 6))
    last_token = 17
    draft = tree([3, 9, 3, 40, 41, 5, 6], [-1, -1, 0, 0, 2, 1, 5])
    inputs = build_tree_inputs(draft, last_token, start_position=prefix.shape[1])

    with torch.no_grad():
        cache = model(prefix, use_cache=True).past_key_values
        assert cache.get_seq_length() == prefix.shape[1]
        tree_logits = model(
            inputs.input_ids[None],
            position_ids=inputs.position_ids[None],
            attention_mask=inputs.attention_mask(dtype=mask_dtype),
            past_key_values=cache,
            use_cache=True,
        ).logits[0]  # (1+n, V)
        # Negative control: a plain causal mask over the same tokens lets node i see the
        # nodes before it that are not its ancestors, so some node's logits must change.
        causal_cache = model(prefix, use_cache=True).past_key_values
        causal_logits = model(
            inputs.input_ids[None],
            position_ids=inputs.position_ids[None],
            past_key_values=causal_cache,
        ).logits[0]

        assert draft.parents is not None
        for node in range(-1, len(draft)):
            nodes = path_to(draft.parents, node) if node >= 0 else []
            sequence = [*prefix[0].tolist(), last_token, *(draft.token_ids[i] for i in nodes)]
            sequential = model(torch.tensor([sequence])).logits[0, -1]
            torch.testing.assert_close(tree_logits[node + 1], sequential, atol=1e-4, rtol=0)
    assert (causal_logits - tree_logits).abs().max() > 1e-2
