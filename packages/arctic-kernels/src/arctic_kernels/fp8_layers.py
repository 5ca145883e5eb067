"""Carry quantized layers from where they were made (GPTQ needs calibration data) to where
they are served: one safetensors file of every `Fp8Linear` in a module, beside the
unquantized checkpoint.

    save_fp8_layers(drafter, "drafter_dir/fp8_layers.safetensors")  # after quantize_drafter
    drafter = load_drafter("drafter_dir")                            # bf16, as trained
    load_fp8_layers(drafter, "drafter_dir/fp8_layers.safetensors")  # the same Fp8Linear back

The file holds, per layer, `<name>.weight_fp8` (float8_e4m3fn), `<name>.weight_scale`
(float32, one per output row) and `<name>.bias` when present; its safetensors metadata
(`arctic_fp8_layers`, JSON) holds the format version and, per layer, the other names the
same layer sits under (tied heads), its shape, schemes, output dtype and rounding.
`load_fp8_layers` checks everything before it replaces anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from arctic_kernels.fp8 import FP8_DTYPE
from arctic_kernels.fp8_linear import ACTIVATION_SCHEMES, Fp8Linear
from arctic_kernels.quantize_drafter import QuantizationReport

FP8_LAYERS_FILE = "fp8_layers.safetensors"
FORMAT_KEY = "arctic_fp8_layers"
FORMAT_VERSION = 1
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _dtype_name(dtype: torch.dtype) -> str:
    for name, d in _DTYPES.items():
        if d == dtype:
            return name
    raise ValueError(f"unsupported out_dtype {dtype} (one of {sorted(_DTYPES)})")


def save_fp8_layers(module: torch.nn.Module, path: str | os.PathLike[str]) -> Path:
    """Write every Fp8Linear of `module` (a tied layer once) to `path`; returns the path."""
    from safetensors.torch import save_file

    names: dict[int, list[str]] = {}
    layers: dict[int, Fp8Linear] = {}
    for parent_name, parent in module.named_modules(remove_duplicate=False):
        for attr, child in parent._modules.items():
            if isinstance(child, Fp8Linear):
                names.setdefault(id(child), []).append(
                    f"{parent_name}.{attr}" if parent_name else attr
                )
                layers[id(child)] = child
    if not layers:
        raise ValueError(f"{type(module).__name__} holds no Fp8Linear: nothing to save")
    tensors: dict[str, torch.Tensor] = {}
    spec: dict[str, Any] = {}
    for key, layer in layers.items():
        name, *aliases = names[key]
        tensors[f"{name}.weight_fp8"] = layer.weight_fp8.contiguous().cpu()
        tensors[f"{name}.weight_scale"] = layer.weight_scale.reshape(-1).contiguous().cpu()
        if layer.bias is not None:
            tensors[f"{name}.bias"] = layer.bias.contiguous().cpu()
        spec[name] = {
            "aliases": aliases,
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "weight_scheme": layer.weight_scheme,
            "activation_scheme": layer.activation_scheme,
            "out_dtype": _dtype_name(layer.out_dtype),
            "rounding": layer.rounding,
        }
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")  # a crash mid-write leaves no half file behind
    meta = {FORMAT_KEY: json.dumps({"version": FORMAT_VERSION, "layers": spec})}
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, out)
    return out


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a bad file
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from exc
    if FORMAT_KEY not in meta:
        raise ValueError(f"{path}: no {FORMAT_KEY!r} metadata: not written by save_fp8_layers")
    try:
        header = json.loads(meta[FORMAT_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: bad {FORMAT_KEY!r} metadata ({exc})") from exc
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format version {header.get('version')!r} is not supported "
            f"(this arctic-kernels reads version {FORMAT_VERSION})"
        )
    return header["layers"], tensors


def load_fp8_layers(
    module: torch.nn.Module, path: str | os.PathLike[str], *, check_finite: bool = True
) -> QuantizationReport:
    """Replace the nn.Linear layers named in `path` (written by `save_fp8_layers`) with the
    saved Fp8Linear, in place, on the device of the Linear each replaces.

    Every named layer must be an nn.Linear of the saved shape in `module`; any mismatch is
    a ValueError naming the file and the layer, raised before anything is replaced.
    check_finite: as `Fp8Linear` (False inside CUDA graphs).
    """
    path = Path(path)
    spec, tensors = _read(path)
    modules = dict(module.named_modules(remove_duplicate=False))
    report = QuantizationReport()
    built: list[tuple[list[str], Fp8Linear, torch.nn.Linear]] = []
    for name, entry in spec.items():
        where = f"{path}: layer {name!r}"
        places = [name, *entry.get("aliases", [])]
        found = [modules.get(p) for p in places]
        bad = [p for p, m in zip(places, found, strict=True) if type(m) is not torch.nn.Linear]
        if bad:
            raise ValueError(f"{where}: {bad} is not an nn.Linear in {type(module).__name__}")
        linears = [m for m in found if isinstance(m, torch.nn.Linear)]
        shape = (entry["out_features"], entry["in_features"])
        wrong = [p for p, m in zip(places, linears, strict=True) if tuple(m.weight.shape) != shape]
        if wrong:
            raise ValueError(f"{where}: saved {shape}, but {wrong} has another shape")
        weight = tensors.get(f"{name}.weight_fp8")
        scale = tensors.get(f"{name}.weight_scale")
        if weight is None or scale is None:
            raise ValueError(f"{where}: weight_fp8 or weight_scale is missing")
        if weight.dtype != FP8_DTYPE or tuple(weight.shape) != shape:
            raise ValueError(
                f"{where}: weight_fp8 is {weight.dtype} {tuple(weight.shape)}, "
                f"expected {FP8_DTYPE} {shape}"
            )
        if entry.get("activation_scheme") not in ACTIVATION_SCHEMES:
            raise ValueError(
                f"{where}: unknown activation_scheme {entry.get('activation_scheme')!r}"
            )
        if entry.get("out_dtype") not in _DTYPES:
            raise ValueError(f"{where}: unknown out_dtype {entry.get('out_dtype')!r}")
        device = linears[0].weight.device
        bias = tensors.get(f"{name}.bias")
        try:
            layer = Fp8Linear.from_fp8(
                weight.to(device),
                scale.to(device),
                None if bias is None else bias.to(device),
                out_dtype=_DTYPES[entry["out_dtype"]],
                rounding=str(entry.get("rounding", "nearest")),
                weight_scheme=entry.get("weight_scheme", "per_channel"),
                activation_scheme=entry["activation_scheme"],
                check_finite=check_finite,
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from exc
        built.append((places, layer, linears[0]))
    for places, layer, linear in built:
        for place in places:
            parent_name, _, attr = place.rpartition(".")
            setattr(modules[parent_name] if parent_name else module, attr, layer)
            report.replaced.append(place)
            report.matmul_backends[place] = layer.matmul_backend
        report.bytes_before += linear.weight.numel() * linear.weight.element_size()
        report.bytes_after += layer.weight_bytes()
        report.activation_scheme = layer.activation_scheme
        report.rounding = layer.rounding
    return report
