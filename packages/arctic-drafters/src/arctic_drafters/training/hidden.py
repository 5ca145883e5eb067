"""The frozen target's hidden states, computed once and optionally cached to disk.

The drafter reads the target's last-layer state *after the final norm*: the very vector the
target's LM head turns into logits, ``base_model(...).last_hidden_state``. (Checked with
transformers 5.19 on LlamaForCausalLM: ``lm_head(last_hidden_state)`` equals the logits
exactly; we do not rely on ``output_hidden_states``, whose last entry has been pre-norm in
some versions.) vLLM's ``hidden_states`` given to a drafter are this same post-norm state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ..exceptions import DatasetError

HIDDEN_FILE = "hidden.safetensors"


@dataclass(frozen=True)
class HiddenStates:
    hidden: torch.Tensor  # (N, T, H): final-norm state at every position of every sequence
    lm_head: torch.Tensor  # (V, H): the target's output projection, for the KL term


def final_norm_states(
    model: Any, tokens: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, T) tokens -> (B, T, H) final-norm states of a transformers causal LM. Padding is
    on the right (``attention_mask`` 0 there): a causal model's states before it are exact."""
    mask = torch.ones_like(tokens) if attention_mask is None else attention_mask
    out = model.base_model(input_ids=tokens, attention_mask=mask)
    return out.last_hidden_state  # type: ignore[no-any-return]


class TargetStates:
    """The frozen target inside the training loop: a batch's final-norm states, computed
    without gradient when asked for, so memory is set by the batch, not by the dataset."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.hidden_size = int(model.config.hidden_size)
        self.vocab_size = int(model.config.vocab_size)
        self.lm_head = model.get_output_embeddings().weight.detach()  # (V, H), for the KL term

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return final_norm_states(self.model, tokens, attention_mask)


@torch.no_grad()
def compute_hidden_states(
    model: Any, tokens: torch.Tensor, batch_size: int = 32, dtype: torch.dtype = torch.bfloat16
) -> HiddenStates:
    """Run the target over ``tokens`` (N, T); states are stored in ``dtype`` to halve memory."""
    if tokens.dim() != 2 or tokens.shape[0] == 0:
        raise DatasetError(f"tokens must be a non-empty (N, T) tensor, got {tuple(tokens.shape)}")
    vocab = int(model.config.vocab_size)
    if int(tokens.max()) >= vocab or int(tokens.min()) < 0:
        raise DatasetError(f"token ids outside the target's vocabulary 0..{vocab - 1}")
    chunks = []
    for start in tqdm(range(0, tokens.shape[0], batch_size), desc="hidden states", unit="batch"):
        chunks.append(final_norm_states(model, tokens[start : start + batch_size]).to(dtype))
    lm_head = model.get_output_embeddings().weight.detach().float().clone()
    return HiddenStates(torch.cat(chunks), lm_head)


def save_hidden_cache(cache_dir: str | os.PathLike[str], states: HiddenStates) -> Path:
    out = Path(cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (HIDDEN_FILE + ".tmp")
    save_file(
        {"hidden": states.hidden.contiguous(), "lm_head": states.lm_head.contiguous()}, str(tmp)
    )
    os.replace(tmp, out / HIDDEN_FILE)
    return out / HIDDEN_FILE


def load_hidden_cache(cache_dir: str | os.PathLike[str]) -> HiddenStates | None:
    """The cached states, or None when there is no cache yet."""
    path = Path(cache_dir) / HIDDEN_FILE
    if not path.is_file():
        return None
    data = load_file(str(path))
    return HiddenStates(data["hidden"], data["lm_head"])
