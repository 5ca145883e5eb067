"""Builders of random checkpoints in the anchor's key layout (Arctic Inference / vLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

V, H, D = 97, 24, 16


def _ln(prefix: str, dim: int, g: torch.Generator) -> dict:
    return {
        f"{prefix}.weight": 1 + 0.3 * torch.randn(dim, generator=g),
        f"{prefix}.bias": 0.3 * torch.randn(dim, generator=g),
    }


def ibm_mlp(tie: bool, seq_wrap: bool = False, repeat_tied: bool = True, seed: int = 0) -> dict:
    """IBM / vLLM MLPSpeculator (``seq_wrap``: Arctic sum_rnn's ``emb.0.0.weight`` keys).

    Under ``tie`` the anchor's ModuleLists repeat one module; its state_dict then repeats the
    tensor under every head's index (``repeat_tied``), vLLM's named_parameters only once.
    """
    g = torch.Generator().manual_seed(seed)
    s = ".0" if seq_wrap else ""
    w: dict = {}
    for i in range(3):
        w[f"speculator.emb.{i}{s}.weight"] = torch.randn(V, D, generator=g)
        w[f"proj.{i}{s}.weight"] = torch.randn(D, H if i == 0 else D, generator=g) / 4
        w.update(_ln(f"ln.{i}{s}", D, g))
        w[f"head.{i}.weight"] = torch.randn(V, D, generator=g) / 4
    if not tie:
        return w
    for i in (1, 2):
        for key in (
            f"speculator.emb.{{}}{s}.weight",
            f"ln.{{}}{s}.weight",
            f"ln.{{}}{s}.bias",
            "head.{}.weight",
        ):
            w[key.format(i)] = w[key.format(0)]
    w[f"proj.2{s}.weight"] = w[f"proj.1{s}.weight"]
    if not repeat_tied:
        dup = [
            f"speculator.emb.1{s}.",
            f"speculator.emb.2{s}.",
            f"ln.1{s}.",
            f"ln.2{s}.",
            "head.1.",
            "head.2.",
            f"proj.2{s}.",
        ]
        w = {k: v for k, v in w.items() if not k.startswith(tuple(dup))}
    return w


def arctic_lstm(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = {
        "forget_emb.0.weight": torch.randn(V, D, generator=g),
        "projs.0.weight": torch.randn(4 * D, H, generator=g) / 4,
        "projs.1.weight": torch.randn(4 * D, D, generator=g) / 4,
        "head.0.weight": torch.randn(V, D, generator=g) / 4,
    }
    w.update(_ln("cell_ln.0", D, g))
    w.update(_ln("state_ln.0", D, g))
    return w


def write(path: Path, config: dict, weights: dict, fmt: str = "bin") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(config))
    if fmt == "bin":
        torch.save(weights, path / "pytorch_model.bin")
    else:
        from safetensors.torch import save_file

        save_file(
            {k: v.clone().contiguous() for k, v in weights.items()}, str(path / "model.safetensors")
        )
    return path


def vllm_config(tie: bool, scale_input: bool) -> dict:
    return {
        "architectures": ["MLPSpeculatorPreTrainedModel"],
        "model_type": "mlp_speculator",
        "vocab_size": V,
        "emb_dim": H,
        "inner_dim": D,
        "n_predict": 3,
        "top_k_tokens_per_head": [1, 1, 1],
        "n_candidates": 1,
        "tie_weights": tie,
        "scale_input": scale_input,
    }


def arctic_config(
    arch: str, method: str, tie: bool, scale_input: bool = True, dotted: bool = True
) -> dict:
    dim = f"{D}.{D}" if dotted and method == "sum_lstm" else str(D)
    return {
        "architectures": [arch],
        "model_type": "mlp_speculator",
        "n_predict": 3,
        "vocab_size": V,
        "emb_dim": dim,
        "inner_dim": dim,
        "proj_dim": dim,
        "input_hidden_dim": H,
        "tie_weights": tie,
        "scale_input": scale_input,
        "method": method,
        "tie_lstm_embs": True,
    }
