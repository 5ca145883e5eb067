"""Arctic Inference 0.3.0's own speculator classes, on the CPU, read the published layouts and
our exports, and draft the tokens ours draft.

``arctic_inference.vllm.spec_dec.arctic_speculator`` imports only with a CUDA build of vLLM
(its FP8 module imports ``FusedMoE``, which vLLM's CPU build lacks), so a child process stands
in three names that only the FP8 head copy and sequence parallelism use: ``FusedMoE`` (an
isinstance target), ``_SP`` (Arctic's sequence-parallel group: the tensor-parallel one) and
the FP8 head's quant method (the head is built unquantized). ``load_weights`` and
``generate_states`` (its non-CUDA path) run as shipped. Every parameter is NaN before loading,
so one the loader leaves unfilled fails the check.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from anchor_checkpoints import write
from published_layouts import arctic_lstm_config, arctic_lstm_state
from small_configs import SMALL_CONFIGS

from arctic_drafters import LSTMSpeculatorConfig, build_speculator, export_drafter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("arctic_inference") is None
        or importlib.util.find_spec("vllm") is None,
        reason="Arctic Inference (and vLLM) are not installed",
    ),
]

_ARCTIC_READS = """
import json, sys, types
from pathlib import Path
import torch
import vllm.model_executor.layers.fused_moe as fused_moe
if not hasattr(fused_moe, "FusedMoE"):
    fused_moe.FusedMoE = type("FusedMoE", (), {})
from vllm.config import VllmConfig, set_current_vllm_config
from vllm.distributed import init_distributed_environment, initialize_model_parallel
import vllm.distributed.parallel_state as parallel_state
config_scope = set_current_vllm_config(VllmConfig())  # kept: collecting it resets the config
config_scope.__enter__()
init_distributed_environment(1, 0, "file://" + sys.argv[1], 0, "gloo")
initialize_model_parallel(1, 1)
if not hasattr(parallel_state, "_SP"):
    parallel_state._SP = parallel_state._TP
import arctic_inference.vllm.spec_dec.arctic_speculator as arctic
arctic.Fp8ConfigWithEmbedding = lambda: None
arctic.OriginalFp8LinearMethod = lambda quant_config: None
from safetensors.torch import load_file
from vllm.transformers_utils.configs.mlp_speculator import MLPSpeculatorConfig
from arctic_drafters import load_drafter
CLASSES = {
    "ArcticLSTMSpeculatorPreTrainedModel": arctic.ArcticLSTMSpeculator,
    "MLPVariantSpeculatorPreTrainedModel": arctic.ArcticLSTMSpeculator,
    "ArcticMLPSpeculatorPreTrainedModel": arctic.ArcticMLPSpeculator,
}
for root in map(Path, sys.argv[2:]):
    hf = MLPSpeculatorConfig.from_pretrained(str(root))
    serving = types.SimpleNamespace(
        model_config=types.SimpleNamespace(hf_config=hf, enforce_eager=True),
        speculative_config=None,
        scheduler_config=types.SimpleNamespace(max_num_seqs=8),
    )
    model = CLASSES[hf.architectures[0]](vllm_config=serving)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    st = root / "model.safetensors"
    weights = load_file(st) if st.is_file() else torch.load(root / "pytorch_model.bin", weights_only=True)
    model.load_weights(weights.items())
    unfilled = [k for k, p in model.named_parameters() if not k.startswith("qhead.") and p.isnan().any()]
    assert not unfilled, unfilled
    ours = load_drafter(root)
    lstm = getattr(model, "method", None) == "sum_lstm"
    width = model.input_hidden_dim if hasattr(model, "input_hidden_dim") else model.emb_dim
    inner = model.inner_dim[-1] if isinstance(model.inner_dim, list) else model.inner_dim
    hidden = torch.randn(5, width, generator=torch.Generator().manual_seed(0))
    last = torch.arange(5) % hf.vocab_size
    with torch.no_grad():
        state, token, cell, drafts = hidden.unsqueeze(1), last.unsqueeze(1), torch.zeros(5, 1, inner), []
        for i in range(hf.n_predict):
            if lstm:
                state, cell = model.generate_states(token, state, i, cell)
            else:
                state = model.generate_states(token, state, i)
            logits = state.flatten(0, 1) @ model.head[i].weight[: hf.vocab_size].T
            token = logits.argmax(-1, keepdim=True)
            drafts.append(token)
    assert torch.equal(torch.cat(drafts, 1), ours.propose(hidden, last, hf.n_predict)), root
    print("RESULT", root.name)
"""

LLAMA = ["LlamaForCausalLM"]
V, H, D = 97, 24, 16


def _run(tmp_path: Path, roots: list[Path]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ARCTIC_READS, str(tmp_path / "dist"), *map(str, roots)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    results = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert results == [r.name for r in roots]


def test_arctic_inference_reads_the_published_layouts_and_our_exports(tmp_path):
    roots = [
        write(
            tmp_path / "published-bin",
            arctic_lstm_config(V, H, D, archs=LLAMA),
            arctic_lstm_state(V, H, D, seed=1),
        ),
        write(
            tmp_path / "published-deduplicated",
            arctic_lstm_config(V, H, D, 4, scale_input=False, archs=LLAMA),
            arctic_lstm_state(V, H, D, 4, repeat_shared=False, seed=2),
            "safetensors",
        ),
    ]
    exported = {
        "lstm": SMALL_CONFIGS["lstm"],
        "sum-rnn": SMALL_CONFIGS["sum-rnn"],
        "sum-rnn-untied": LSTMSpeculatorConfig(61, 20, 12, method="sum_rnn", tie_weights=False),
        "mlp-tied": SMALL_CONFIGS["mlp-tied"],
        "mlp-untied": SMALL_CONFIGS["mlp-untied"],
    }
    for name, config in exported.items():
        out = tmp_path / f"export-{name}"
        model = build_speculator(config)
        roots.append(
            export_drafter(model, out, "arctic", base_model_archs=LLAMA, dtype=torch.float32)
        )
    _run(tmp_path, roots)
