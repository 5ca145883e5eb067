"""A Hugging Face causal LM as a speculative-decoding target.

One pass yields both the final-norm hidden states (what a drafter reads: ``base_model``'s
``last_hidden_state``) and the greedy tokens (the output embedding on those states), and the
KV cache can drop the positions of rejected draft tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


class HFTarget:
    """A causal LM split into its trunk (``base_model``) and output head."""

    def __init__(self, model: Any) -> None:
        base = getattr(model, "base_model", None)
        get_head = getattr(model, "get_output_embeddings", None)
        head = get_head() if callable(get_head) else None
        if base is None or base is model or head is None:
            raise TypeError(
                f"{type(model).__name__} is not a transformers causal LM with a base model "
                "and an output head (e.g. AutoModelForCausalLM)"
            )
        if getattr(model, "training", False):
            raise ValueError("the model is in training mode (dropout on); call model.eval()")
        self.base = base
        self.head = head
        param = next(model.parameters())
        self.device: torch.device = param.device
        self.dtype: torch.dtype = param.dtype
        self.vocab_size = int(getattr(model.config, "vocab_size", 0) or head.weight.shape[0])
        self.attn_implementation = getattr(model.config, "_attn_implementation", None)

    def forward(
        self,
        input_ids: Sequence[int],
        cache: Any,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_from: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Run ``input_ids`` on top of ``cache`` (None: a new one). Returns the (T, H)
        final-norm states, the (T - logits_from,) argmax tokens, and the cache."""
        ids = torch.tensor([list(input_ids)], dtype=torch.long, device=self.device)
        out = self.base(
            input_ids=ids,
            past_key_values=cache,
            use_cache=True,
            position_ids=None if position_ids is None else position_ids[None].to(self.device),
            attention_mask=None if attention_mask is None else attention_mask.to(self.device),
        )
        hidden = out.last_hidden_state[0]  # (T, H)
        argmax = self.head(hidden[logits_from:]).argmax(-1)  # (T - logits_from,)
        return hidden, argmax, out.past_key_values

    def tree_mask_dtype(self) -> torch.dtype | None:
        """The 4D mask dtype the attention kernels take, or None when they take none."""
        if self.attn_implementation == "sdpa":
            return torch.bool
        if self.attn_implementation == "eager":
            return self.dtype  # eager adds the mask to the scores
        return None  # flash-attention kernels take no arbitrary mask

    def supports_tree(self, cache: Any) -> bool:
        """Whether a tree pass can be verified on ``cache``: the kernels take a tree mask
        and every layer stores all positions (a sliding window drops old ones)."""
        layers = getattr(cache, "layers", None)  # transformers 5 caches
        return (
            self.tree_mask_dtype() is not None
            and layers is not None
            and all(hasattr(x, "keys") and not getattr(x, "is_sliding", False) for x in layers)
        )


def drop_last_positions(cache: Any, num_positions: int) -> None:
    # Negative crop removes that many positions in transformers 4.x and 5.x alike; positive
    # values mean an absolute length (deprecated in 5.x), and crop(0) empties a 4.x cache.
    if num_positions > 0:
        cache.crop(-num_positions)


def keep_new_positions(cache: Any, past: int, offsets: list[int]) -> None:
    """Keep the cache's first ``past`` positions and ``past + offsets`` (ascending)."""
    num_new = cache.get_seq_length() - past
    if offsets == list(range(len(offsets))):
        drop_last_positions(cache, num_new - len(offsets))
        return
    for layer in cache.layers:
        index = torch.tensor(offsets, device=layer.keys.device) + past
        layer.keys = torch.cat([layer.keys[..., :past, :], layer.keys[..., index, :]], dim=-2)
        layer.values = torch.cat([layer.values[..., :past, :], layer.values[..., index, :]], dim=-2)
