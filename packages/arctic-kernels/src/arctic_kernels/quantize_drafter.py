"""Turn a draft model's LM heads (and optionally its projections) into `Fp8Linear`.

Generic over the drafter class: every nn.Linear child whose qualified name matches a pattern
(or a predicate) is replaced in place. A Linear shared by several parents (tied heads) is
quantized once and the one Fp8Linear is put in every place it was.

Default scheme, W8A8 per-token (per-channel e4m3 weights, dynamic per-token activations):
on the tiny arctic-drafters checkpoints weight-only (`activation_scheme="none"`) agrees
with the bf16 drafter 0.3-1.0 points more often per draft position, but neither reaches
99 % (recomputing the bf16 drafter in float32 alone gives 97.7-99.3 %: near-ties), and
the acceptance-length change is the same for both. Only W8A8 reads 1 byte per weight
(`torch._scaled_mm` on sm89+); weight-only in plain torch moves more bytes per call than
bf16 (see `Fp8Linear`). README "Measured" has the numbers.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from arctic_kernels.fp8_linear import ActivationScheme, Fp8Linear, WeightScheme

# fnmatch patterns on qualified names such as "head.0" or "lm_head".
HEAD_PATTERNS: tuple[str, ...] = ("*head*",)
PROJECTION_PATTERNS: tuple[str, ...] = ("*proj*",)


@dataclass
class QuantizationReport:
    """What `quantize_drafter` replaced and the weight bytes before and after."""

    replaced: list[str] = field(default_factory=list)
    bytes_before: int = 0  # weights as they were (bias excluded)
    bytes_after: int = 0  # FP8 weights + scales
    activation_scheme: ActivationScheme = "per_token"  # "none": weight-only
    matmul_backends: dict[str, str] = field(default_factory=dict)


def quantize_drafter(
    module: torch.nn.Module,
    include_projections: bool = False,
    *,
    patterns: Sequence[str] | None = None,
    predicate: Callable[[str, torch.nn.Linear], bool] | None = None,
    weight_scheme: WeightScheme = "per_channel",
    activation_scheme: ActivationScheme = "per_token",
) -> QuantizationReport:
    """Replace matching nn.Linear children of `module` with Fp8Linear, in place.

    patterns: fnmatch patterns on qualified names (default: names containing "head", plus
    "proj" when include_projections). predicate, when given, decides instead of patterns.
    weight_scheme, activation_scheme: as `Fp8Linear`; activation_scheme="none" is
    weight-only (W8A16: exact activations, FP8 weights dequantized at the matmul).
    Raises ValueError when nothing matches, so a renamed drafter does not silently stay
    unquantized.
    """
    if patterns is None:
        patterns = HEAD_PATTERNS + (PROJECTION_PATTERNS if include_projections else ())

    def selected(name: str, linear: torch.nn.Linear) -> bool:
        if predicate is not None:
            return predicate(name, linear)
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    # Collect every (parent, attribute) slot first, duplicates included, then mutate.
    slots: list[tuple[torch.nn.Module, str, str, torch.nn.Linear]] = []
    for parent_name, parent in module.named_modules(remove_duplicate=False):
        # _modules, not named_children(): the latter skips a Linear seen twice in one parent.
        for attr, child in parent._modules.items():
            name = f"{parent_name}.{attr}" if parent_name else attr
            if type(child) is torch.nn.Linear and selected(name, child):
                slots.append((parent, attr, name, child))
    if not slots:
        raise ValueError(
            f"quantize_drafter found no nn.Linear matching {list(patterns)} in "
            f"{type(module).__name__}; pass patterns= or predicate="
        )
    report = QuantizationReport(activation_scheme=activation_scheme)
    converted: dict[int, Fp8Linear] = {}
    for parent, attr, name, linear in slots:
        if id(linear) not in converted:
            fp8 = Fp8Linear.from_linear(
                linear, weight_scheme=weight_scheme, activation_scheme=activation_scheme
            )
            converted[id(linear)] = fp8
            report.bytes_before += linear.weight.numel() * linear.weight.element_size()
            report.bytes_after += fp8.weight_bytes()
            report.matmul_backends[name] = fp8.matmul_backend
        setattr(parent, attr, converted[id(linear)])
        report.replaced.append(name)
    return report
