"""A drafter of ours written in the anchor's formats, for serving elsewhere.

- ``"arctic"``: what Arctic Inference 0.3.0 loads (``speculative_config={"method": "arctic"}``):
  ``ArcticLSTMSpeculatorPreTrainedModel`` for our LSTM drafters (``sum_lstm`` with separate
  gate projections, the layout its loader concatenates; ``sum_rnn`` with its one-element
  Sequential keys), ``ArcticMLPSpeculatorPreTrainedModel`` for our MLP. Its proposer refuses a
  config without ``base_model_archs`` (the target's architectures), so one is required.
- ``"mlp_speculator"``: vLLM's own ``MLPSpeculator`` (vLLM <= 0.32, ``method:
  "mlp_speculator"``), MLP drafters only: it has no LSTM gates. vLLM 0.32 builds one LM head
  per step even under ``tie_weights``, so every head is written (copies of the shared one).

Both: ``config.json`` with the fields the reader takes from its config class (vLLM's
``MLPSpeculatorConfig``: ``top_k_tokens_per_head`` must have ``n_predict`` entries) and one
``model.safetensors`` holding exactly the parameters the reader's module has.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from .arctic_format import (
    ARCTIC_LSTM_ARCHITECTURE,
    ARCTIC_MLP_ARCHITECTURE,
    VLLM_MLP_ARCHITECTURE,
)
from .arctic_layout import LSTM_GATES
from .checkpoint_files import CONFIG_FILE
from .config import LSTMSpeculatorConfig, SpeculatorConfig
from .exceptions import ExportError
from .speculator import Speculator
from .strict_load import build_on_meta

EXPORT_FORMATS = ("arctic", "mlp_speculator")
WEIGHTS_FILE = "model.safetensors"
ANCHOR_NORM_EPS = 1e-6  # MLPSpeculatorLayerNorm's default, the only one either reader uses


def export_drafter(
    model: Speculator,
    path: str | os.PathLike[str],
    format: str,
    *,
    base_model_archs: Sequence[str] | None = None,
    dtype: torch.dtype = torch.bfloat16,
    base_model_name_or_path: str | None = None,
) -> Path:
    """Write ``model`` into directory ``path`` as ``format`` (one of ``EXPORT_FORMATS``).

    ``base_model_archs`` (default: the drafter's own, recorded at training) names the target
    architectures, e.g. ``["LlamaForCausalLM"]``; ``dtype`` converts the weights. Everything
    is checked before a file is written: an ExportError says why the reader could not run
    the drafter (an LSTM for vLLM, untied LSTM embeddings for Arctic, no base_model_archs)."""
    config = model.config
    archs = tuple(base_model_archs) if base_model_archs is not None else config.base_model_archs
    _check_exportable(model, format, archs, dtype)
    out = Path(path)
    if (out / "pytorch_model.bin").exists():
        raise ExportError(
            f"{out} holds a pytorch_model.bin, which readers may take over the export's "
            f"{WEIGHTS_FILE}: export into an empty directory"
        )
    state = {k: v.detach() for k, v in model.state_dict().items()}
    if format == "arctic":
        fields, tensors = _arctic(config, state, archs)
    else:
        fields, tensors = _mlp_speculator(config, state, archs)
    fields["torch_dtype"] = str(dtype).removeprefix("torch.")
    if base_model_name_or_path is not None:
        fields["base_model_name_or_path"] = base_model_name_or_path
    # Own storage per tensor: safetensors refuses views (gate blocks) and repeated heads.
    tensors = {k: v.to("cpu", dtype).contiguous().clone() for k, v in tensors.items()}
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / WEIGHTS_FILE)
    tmp_cfg = out / (CONFIG_FILE + ".tmp")
    tmp_cfg.write_text(json.dumps(fields, indent=2, sort_keys=True) + "\n")
    os.replace(tmp_cfg, out / CONFIG_FILE)
    return out


def _check_exportable(
    model: Speculator, format: str, archs: tuple[str, ...], dtype: torch.dtype
) -> None:
    config = model.config
    if format not in EXPORT_FORMATS:
        raise ExportError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if not dtype.is_floating_point:
        raise ExportError(f"dtype must be a floating-point dtype, got {dtype}")
    if not all(isinstance(a, str) and a for a in archs):
        raise ExportError(f"base_model_archs must be architecture names, got {list(archs)!r}")
    expected = set(build_on_meta(config).state_dict())
    if set(model.state_dict()) != expected:
        raise ExportError(
            "the drafter's modules are not the plain ones its config builds (quantized or "
            f"edited: {sorted(set(model.state_dict()) ^ expected)[:4]}); export the float "
            "drafter as loaded by load_drafter"
        )
    if config.norm_eps != ANCHOR_NORM_EPS:
        raise ExportError(
            f"norm_eps={config.norm_eps} cannot be exported: Arctic Inference and vLLM fix "
            f"the speculator norms' epsilon at {ANCHOR_NORM_EPS}"
        )
    lstm = (
        config if isinstance(config, LSTMSpeculatorConfig) and config.method == "sum_lstm" else None
    )
    if format == "mlp_speculator" and lstm:
        raise ExportError(
            "vLLM's mlp_speculator format has no LSTM gates: an LSTM (sum_lstm) drafter "
            "exports as format 'arctic' (Arctic Inference) or is served by arctic-vllm"
        )
    if format == "arctic":
        if not archs:
            raise ExportError(
                "Arctic Inference refuses a drafter config without base_model_archs: pass the "
                "target's architectures (base_model_archs=['LlamaForCausalLM'], or "
                "arctic-train export --base-model-arch / --target)"
            )
        if lstm and not (lstm.tie_weights and lstm.tie_lstm_embs):
            raise ExportError(
                "Arctic Inference 0.3.0 runs sum_lstm drafters only with tie_weights=true and "
                f"tie_lstm_embs=true; this one has tie_weights={lstm.tie_weights}, "
                f"tie_lstm_embs={lstm.tie_lstm_embs}"
            )


def _common(config: SpeculatorConfig, archs: tuple[str, ...], arch: str) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "architectures": [arch],
        "model_type": "mlp_speculator",
        "vocab_size": config.vocab_size,
        "n_predict": config.n_predict,
        # Serving knobs of vLLM's MLPSpeculatorConfig (it asserts one entry per head).
        "n_candidates": config.n_predict,
        "top_k_tokens_per_head": [1] * config.n_predict,
        "tie_weights": config.tie_weights,
        "scale_input": config.scale_input,
    }
    if archs:
        fields["base_model_archs"] = list(archs)
    return fields


def _unique(config: SpeculatorConfig) -> tuple[int, int]:
    """Stored copies of the per-head modules and of the projections (as our layout)."""
    if config.tie_weights:
        return 1, min(config.n_predict, 2)
    return config.n_predict, config.n_predict


def _mlp_tensors(
    config: SpeculatorConfig, state: dict[str, torch.Tensor], wrap: str, heads: int
) -> dict[str, torch.Tensor]:
    """The MLP step's tensors; ``wrap`` ".0" for Arctic sum_rnn's one-element Sequentials."""
    shared, projs = _unique(config)
    tensors: dict[str, torch.Tensor] = {}
    for j in range(shared):
        tensors[f"emb.{j}{wrap}.weight"] = state[f"emb.{j}.weight"]
        tensors[f"ln.{j}{wrap}.weight"] = state[f"ln.{j}.weight"]
        tensors[f"ln.{j}{wrap}.bias"] = state[f"ln.{j}.bias"]
    for j in range(projs):
        tensors[f"proj.{j}{wrap}.weight"] = state[f"proj.{j}.weight"]
    for i in range(heads):
        tensors[f"head.{i}.weight"] = state[f"head.{min(i, shared - 1)}.weight"]
    return tensors


def _arctic(
    config: SpeculatorConfig, state: dict[str, torch.Tensor], archs: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    shared, _ = _unique(config)
    if not isinstance(config, LSTMSpeculatorConfig):  # ArcticMLPSpeculator: IBM's layout
        fields = _common(config, archs, ARCTIC_MLP_ARCHITECTURE)
        fields |= {"emb_dim": config.hidden_size, "inner_dim": config.inner_dim}
        return fields, _mlp_tensors(config, state, "", heads=shared)
    width = str(config.inner_dim)  # ArcticTraining writes widths as (dotted) strings
    fields = _common(config, archs, ARCTIC_LSTM_ARCHITECTURE) | {
        "input_hidden_dim": config.hidden_size,
        "emb_dim": width,
        "inner_dim": width,
        "proj_dim": width,
        "method": config.method,
        "tie_lstm_embs": config.tie_lstm_embs,
    }
    if config.method == "sum_rnn":
        return fields, _mlp_tensors(config, state, ".0", heads=shared)
    d = config.inner_dim
    tensors = {
        "forget_emb.0.weight": state["emb.0.weight"],
        "head.0.weight": state["head.0.weight"],
    }
    for norm in ("cell_ln", "state_ln"):
        tensors[f"{norm}.0.weight"] = state[f"{norm}.0.weight"]
        tensors[f"{norm}.0.bias"] = state[f"{norm}.0.bias"]
    for j in range(2):  # ArcticLSTMSpeculator's projs: from the target, then the shared one
        proj = state[f"proj.{j}.weight"]  # (4D, in)
        for k, gate in enumerate(LSTM_GATES):
            tensors[f"{gate}_proj.{j}.weight"] = proj[k * d : (k + 1) * d]
    return fields, tensors


def _mlp_speculator(
    config: SpeculatorConfig, state: dict[str, torch.Tensor], archs: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    fields = _common(config, archs, VLLM_MLP_ARCHITECTURE)
    fields |= {"emb_dim": config.hidden_size, "inner_dim": config.inner_dim}
    return fields, _mlp_tensors(config, state, "", heads=config.n_predict)
