"""Checkpoints in the exact layouts that are published, at small sizes.

The Arctic LSTM speculators (e.g. Snowflake/Arctic-LSTM-Speculator-Llama-3.1-8B-Instruct) are
ArcticTraining output: ``torch.save(ArcticLSTMSpeculator(config).state_dict())`` and its
``ArcticLSTMSpeculatorConfig.save`` (projects/arctic_lstm_speculator in ArcticTraining). That
model keeps one ``{forget,input,cell,output}_proj`` pair (from the target, then shared) per
gate; under ``tie_lstm_embs`` its ``input_emb`` / ``cell_emb`` / ``output_emb`` are the
``forget_emb`` ModuleList itself, and under ``tie_weights`` every head shares head 0's weight,
so its state_dict repeats those tensors under each name. A safetensors copy of it (as the
Hub's conversion writes) keeps each shared tensor once.
"""

from __future__ import annotations

import torch

# The published configs' fields at the Llama-3.1-8B sizes (hidden 4096, vocab 128256, 3 heads).
LLAMA_8B = {"input_hidden_dim": 4096, "vocab_size": 128256, "width": 4096, "n_predict": 3}


def arctic_lstm_config(
    vocab: int,
    hidden: int,
    width: int,
    n_predict: int = 3,
    *,
    tie_lstm_embs: bool = True,
    scale_input: bool = True,
    archs: list[str] | None = None,
) -> dict:
    """ArcticLSTMSpeculatorConfig.__dict__ as ArcticTraining writes it for a sum_lstm run
    (widths are strings: the training yaml gives them as "4096"), plus base_model_archs."""
    config = {
        "architectures": ["ArcticLSTMSpeculatorPreTrainedModel"],
        "base_model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
        "input_hidden_dim": hidden,
        "inner_dim": str(width),
        "proj_dim": str(width),
        "emb_dim": str(width),
        "model_type": "mlp_speculator",
        "n_candidates": n_predict,
        "n_predict": n_predict,
        "scale_input": scale_input,
        "tie_weights": True,
        "tie_lstm_embs": tie_lstm_embs,
        "top_k_tokens_per_head": [1] * n_predict,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.47.1",
        "vocab_size": vocab,
        "method": "sum_lstm",
    }
    if archs is not None:
        config["base_model_archs"] = archs
    return config


def arctic_lstm_state(
    vocab: int,
    hidden: int,
    width: int,
    n_predict: int = 3,
    *,
    tie_lstm_embs: bool = True,
    repeat_shared: bool = True,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """The training model's state_dict, in its registration order (``device="meta"``: shapes
    only). ``repeat_shared=False``: each shared tensor once (a deduplicated safetensors)."""
    g = torch.Generator().manual_seed(seed) if device != "meta" else None

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=g) * scale

    state: dict[str, torch.Tensor] = {}
    forget = rand(vocab, width)
    state["forget_emb.0.weight"] = forget
    for gate in ("input", "cell", "output"):
        if not tie_lstm_embs:
            state[f"{gate}_emb.0.weight"] = rand(vocab, width)
        elif repeat_shared:
            state[f"{gate}_emb.0.weight"] = forget  # the same ModuleList under four names
    for gate in ("forget", "input", "cell", "output"):
        state[f"{gate}_proj.0.weight"] = rand(width, hidden, scale=0.25)
        state[f"{gate}_proj.1.weight"] = rand(width, width, scale=0.25)
    for norm in ("cell_ln", "state_ln"):
        state[f"{norm}.0.weight"] = 1 + rand(width, scale=0.3)
        state[f"{norm}.0.bias"] = rand(width, scale=0.3)
    head = rand(vocab, width, scale=0.25)
    for i in range(n_predict if repeat_shared else 1):
        state[f"head.{i}.weight"] = head  # head.weight = head[0].weight under tie_weights
    return state
