"""FP8 draft heads (int8 for the CPU), tensor-parallel top-k and fused kernels for
speculative decoding.

Every fused kernel sits beside a plain-torch reference; dispatch picks Triton on CUDA when
triton imports and the reference elsewhere, and `selected_backend(op)` says which ran.
"""

from __future__ import annotations

from arctic_kernels._dispatch import selected_backend, triton_available
from arctic_kernels._fp8_format import FP8_DTYPE, FP8_MAX, MIN_SCALE
from arctic_kernels.agreement import (
    AgreementEvaluator,
    AgreementReport,
    DraftModel,
    TokenFlip,
    head_agreement,
    is_top1,
)
from arctic_kernels.exceptions import BackendUnavailableError, NonFiniteInputError, ShardingError
from arctic_kernels.fp8 import (
    dequantize,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_token,
    quantize_per_token_reference,
)
from arctic_kernels.fp8_layers import FP8_LAYERS_FILE, load_fp8_layers, save_fp8_layers
from arctic_kernels.fp8_linear import Fp8Linear
from arctic_kernels.gptq import HessianAccumulator, quantize_gptq
from arctic_kernels.int8_linear import (
    INT8_MAX,
    Int8Linear,
    int8_linear_reference,
    quantize_int8_per_channel,
)
from arctic_kernels.layernorm import (
    SpeculatorLayerNorm,
    speculator_layer_norm,
    speculator_layer_norm_reference,
)
from arctic_kernels.quantize_drafter import (
    HEAD_PATTERNS,
    PROJECTION_PATTERNS,
    QuantizationReport,
    draft_calibration,
    quantize_drafter,
    quantize_drafter_int8,
)
from arctic_kernels.sharded_topk import (
    pack_value_index,
    sharded_topk,
    topk_reference,
    unpack_value_index,
)
from arctic_kernels.sum_lstm import sum_lstm_cell, sum_lstm_cell_reference
from arctic_kernels.tp_bytes import TopkBytes, topk_bytes_per_step, topk_bytes_table

__version__ = "0.1.0"

__all__ = [
    "FP8_DTYPE",
    "FP8_LAYERS_FILE",
    "FP8_MAX",
    "HEAD_PATTERNS",
    "INT8_MAX",
    "MIN_SCALE",
    "PROJECTION_PATTERNS",
    "AgreementEvaluator",
    "AgreementReport",
    "BackendUnavailableError",
    "DraftModel",
    "Fp8Linear",
    "HessianAccumulator",
    "Int8Linear",
    "NonFiniteInputError",
    "QuantizationReport",
    "ShardingError",
    "SpeculatorLayerNorm",
    "TokenFlip",
    "TopkBytes",
    "__version__",
    "dequantize",
    "draft_calibration",
    "head_agreement",
    "int8_linear_reference",
    "is_top1",
    "load_fp8_layers",
    "pack_value_index",
    "quantize_drafter",
    "quantize_drafter_int8",
    "quantize_gptq",
    "quantize_int8_per_channel",
    "quantize_per_channel",
    "quantize_per_tensor",
    "quantize_per_token",
    "quantize_per_token_reference",
    "save_fp8_layers",
    "selected_backend",
    "sharded_topk",
    "speculator_layer_norm",
    "speculator_layer_norm_reference",
    "sum_lstm_cell",
    "sum_lstm_cell_reference",
    "topk_bytes_per_step",
    "topk_bytes_table",
    "topk_reference",
    "triton_available",
    "unpack_value_index",
]
