"""The FP8 e4m3fn format and scale floor shared by the plain-torch quantizers (``fp8.py``)
and the Triton kernel (``_triton/fp8_quant.py``): one definition, so the two cannot drift."""

from __future__ import annotations

import torch

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(torch.float8_e4m3fn).max)  # 448.0
# Floor for a scale; far below any real amax / 448 of bf16 data, so it only matters for zeros.
MIN_SCALE = 1e-12
