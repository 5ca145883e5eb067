"""Arctic Inference 0.3.0's and vLLM 0.32's speculators, restated in plain torch from their
source (arctic_inference/vllm/spec_dec/arctic_speculator.py, vllm/model_executor/models/
mlp_speculator.py): which parameters their modules have, how their loaders fill them, and
their equations. Written from those files, not from arctic_drafters; neither imports here
without a GPU (Arctic's module needs vLLM's CUDA-only FusedMoE), so this is the stand-in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import load_file

GATES = ("forget", "input", "output", "cell")  # load_weights: torch.cat([f, i, o, c])
ARCTIC_LSTM_ARCHS = ("ArcticLSTMSpeculatorPreTrainedModel", "MLPVariantSpeculatorPreTrainedModel")
ARCTIC_PROPOSER_ARCHS = (
    "ArcticMLPSpeculatorPreTrainedModel",
    "ArcticLSTMSpeculatorPreTrainedModel",
    "MLPVariantSpeculatorPreTrainedModel",
)


def _width(value) -> int:
    return int(str(value).split(".")[0])


def rms(x, weight=None, bias=None, eps=1e-6):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # MLPSpeculatorLayerNorm
    return y if weight is None else weight * y + bias


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # nn.GELU()


def alpha(n_predict: int, width: int) -> float:
    state_weight = 0.5 ** (0.5 / n_predict)
    return math.sqrt((1 - state_weight**2) * (width / 2)) / state_weight


def parameter_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    """``dict(module.named_parameters())`` of the module the architecture builds (shared
    modules once, as named_parameters deduplicates), num_lookahead_tokens = n_predict."""
    arch = cfg["architectures"][0]
    n, v, tie = cfg["n_predict"], cfg["vocab_size"], cfg.get("tie_weights", False)
    shapes: dict[str, tuple[int, ...]] = {}
    if arch in ARCTIC_LSTM_ARCHS and cfg.get("method") == "sum_lstm":
        h, d = cfg["input_hidden_dim"], _width(cfg["inner_dim"])
        shapes["forget_emb.0.weight"] = (v, d)
        if not cfg["tie_lstm_embs"]:
            for gate in ("input", "cell", "output"):
                shapes[f"{gate}_emb.0.weight"] = (v, d)
        shapes["projs.0.weight"] = (4 * d, h)
        shapes["projs.1.weight"] = (4 * d, d)
        for norm in ("cell_ln", "state_ln"):
            shapes[f"{norm}.0.weight"] = shapes[f"{norm}.0.bias"] = (d,)
        shapes["head.0.weight"] = (v, d)
        return shapes
    arctic_seq = arch in ARCTIC_LSTM_ARCHS  # sum_rnn: Sequential-wrapped
    h = cfg["input_hidden_dim"] if arctic_seq else cfg["emb_dim"]
    d = _width(cfg["inner_dim"]) if arctic_seq else (cfg.get("inner_dim") or cfg["emb_dim"])
    wrap = ".0" if arctic_seq else ""
    shared = 1 if tie else n
    for j in range(shared):
        shapes[f"emb.{j}{wrap}.weight"] = (v, d)
        shapes[f"ln.{j}{wrap}.weight"] = shapes[f"ln.{j}{wrap}.bias"] = (d,)
    for j in range(2 if tie else n):
        shapes[f"proj.{j}{wrap}.weight"] = (d, h if j == 0 else d)
    # vLLM 0.32's MLPSpeculator builds one ParallelLMHead per step even under tie_weights.
    heads = n if arch == "MLPSpeculatorPreTrainedModel" else shared
    for i in range(heads):
        shapes[f"head.{i}.weight"] = (v, d)
    return shapes


def read_checkpoint(root: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json and the weights as the reader's loader leaves its parameters. Arctic's and
    vLLM's loaders skip unknown names and leave missing parameters uninitialised; here both
    are failures, so every parameter is known to come from the file."""
    cfg = json.loads((root / "config.json").read_text())
    archs = cfg["architectures"]
    assert isinstance(archs, list) and len(archs) == 1, archs
    if archs[0] in ARCTIC_PROPOSER_ARCHS:
        assert "base_model_archs" in cfg  # ArcticProposer.load_model asserts it
    w = {
        k.replace("speculator.", ""): v.double()
        for k, v in load_file(root / "model.safetensors").items()
    }
    if cfg.get("method") == "sum_lstm" and cfg.get("tie_lstm_embs"):
        for name in ("input_emb.0.weight", "cell_emb.0.weight", "output_emb.0.weight"):
            w.pop(name, None)
        for j in (0, 1):
            w[f"projs.{j}.weight"] = torch.cat([w.pop(f"{g}_proj.{j}.weight") for g in GATES])
    expected = parameter_shapes(cfg)
    assert set(w) == set(expected), (sorted(set(w) - set(expected)), sorted(set(expected) - set(w)))
    assert {k: tuple(v.shape) for k, v in w.items()} == expected
    return cfg, w


def logits(cfg: dict, w: dict[str, torch.Tensor], hidden, tokens) -> torch.Tensor:
    """Teacher-forced (k, B, V) logits of the reader's generate_states + head: head i reads
    tokens[:, i]. ``w`` as read_checkpoint returns it."""
    arch = cfg["architectures"][0]
    n, tie = cfg["n_predict"], cfg.get("tie_weights", False)
    lstm = arch in ARCTIC_LSTM_ARCHS and cfg.get("method") == "sum_lstm"
    arctic_seq = arch in ARCTIC_LSTM_ARCHS
    d = _width(cfg["inner_dim"]) if arctic_seq else (cfg.get("inner_dim") or cfg["emb_dim"])
    a = alpha(n, d)
    state = hidden.double()
    if cfg.get("scale_input"):
        state = rms(state) / math.sqrt(2.0)
    cell = torch.zeros(state.shape[0], d, dtype=torch.float64)
    wrap = ".0" if arctic_seq else ""
    out = []
    for i in range(tokens.shape[1]):
        tok = tokens[:, i]
        e = 0 if tie else i
        p = 1 if tie and i >= 2 else i
        if lstm:
            z4 = w["forget_emb.0.weight"][tok].repeat(1, 4)
            x = state @ w[f"projs.{p}.weight"].T + a * z4
            fio, cand = x.split([3 * d, d], dim=-1)
            f, g_in, o = torch.sigmoid(fio).split([d, d, d], dim=-1)
            cand = gelu(rms(cand, w["cell_ln.0.weight"], w["cell_ln.0.bias"])) * g_in
            cell = cell * f + cand
            state = gelu(rms(cell, w["state_ln.0.weight"], w["state_ln.0.bias"])) * o
        else:
            z = w[f"emb.{e}{wrap}.weight"][tok]
            x = state @ w[f"proj.{p}{wrap}.weight"].T + a * z
            state = gelu(rms(x, w[f"ln.{e}{wrap}.weight"], w[f"ln.{e}{wrap}.bias"]))
        head = f"head.{i}.weight" if f"head.{i}.weight" in w else f"head.{e}.weight"
        out.append(state @ w[head].T)
    return torch.stack(out)


def lstm_logits_per_gate(cfg: dict, w: dict[str, torch.Tensor], hidden, tokens):
    """ArcticTraining's ArcticLSTMSpeculator.forward on its own separate tensors (the
    published layout), gate by gate: no concatenation, so no gate order to get wrong."""
    w = {k: v.double() for k, v in w.items()}
    n, d = cfg["n_predict"], _width(cfg["inner_dim"])
    a = alpha(n, d)
    emb = {g: w.get(f"{g}_emb.0.weight", w["forget_emb.0.weight"]) for g in GATES}
    if not cfg["tie_lstm_embs"]:
        emb = {g: w[f"{g}_emb.0.weight"] for g in GATES}
    state = hidden.double()
    if cfg.get("scale_input"):
        state = rms(state) / math.sqrt(2.0)
    cell = torch.zeros(state.shape[0], d, dtype=torch.float64)
    out = []
    for i in range(tokens.shape[1]):
        tok, p = tokens[:, i], (1 if i >= 2 else i)
        pre = {g: state @ w[f"{g}_proj.{p}.weight"].T + a * emb[g][tok] for g in GATES}
        forget, input_gate, output = (torch.sigmoid(pre[g]) for g in ("forget", "input", "output"))
        cand = gelu(rms(pre["cell"], w["cell_ln.0.weight"], w["cell_ln.0.bias"])) * input_gate
        cell = cell * forget + cand
        state = gelu(rms(cell, w["state_ln.0.weight"], w["state_ln.0.bias"])) * output
        out.append(state @ w[f"head.{i}.weight" if f"head.{i}.weight" in w else "head.0.weight"].T)
    return torch.stack(out)


def greedy(logits_fn, hidden, last, n: int) -> torch.Tensor:
    """Greedy drafts from a teacher-forced logits function: each head reads the previous
    head's argmax (generate_token_ids)."""
    tokens = last[:, None]
    for i in range(n):
        nxt = logits_fn(hidden, tokens)[i].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], 1)
    return tokens[:, 1:]
