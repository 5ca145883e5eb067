"""save_fp8_layers / load_fp8_layers: the served drafter computes exactly what the
quantized one did; a file that does not fit the module changes nothing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from stand_ins import TinyMLPSpeculator

from arctic_kernels import FP8_DTYPE, Fp8Linear, load_fp8_layers, quantize_drafter, save_fp8_layers


def _drafter(tied: bool = False) -> TinyMLPSpeculator:
    torch.manual_seed(0)
    d = TinyMLPSpeculator(vocab=512, emb_dim=64, inner=64, n_predict=3).to(torch.bfloat16).eval()
    if tied:
        d.head[1] = d.head[0]
        d.head[2] = d.head[0]
    return d


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(64, 64, generator=g).to(torch.bfloat16), torch.randint(
        0, 512, (64,), generator=g
    )


@pytest.mark.parametrize(
    ("activation_scheme", "gptq", "out_dtype"),
    [("per_token", False, None), ("none", True, torch.float32), ("per_tensor", True, None)],
)
@torch.no_grad()
def test_round_trip_gives_the_same_outputs(
    tmp_path: Path, activation_scheme: str, gptq: bool, out_dtype: torch.dtype | None
) -> None:
    state, token = _inputs()
    quantized = _drafter()
    quantize_drafter(
        quantized,
        include_projections=True,
        activation_scheme=activation_scheme,  # type: ignore[arg-type]
        out_dtype=out_dtype,
        calibration=(lambda m: m(state, token)) if gptq else None,
    )
    path = save_fp8_layers(quantized, tmp_path / "fp8_layers.safetensors")
    served = _drafter()  # the unquantized checkpoint, as a server loads it
    report = load_fp8_layers(served, path)
    assert sorted(report.replaced) == ["head.0", "head.1", "head.2", "proj.0", "proj.1", "proj.2"]
    assert report.rounding == ("gptq" if gptq else "nearest")
    for a, b in zip(quantized(state, token), served(state, token), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    for name, layer in served.named_modules():
        if isinstance(layer, Fp8Linear):
            twin = quantized.get_submodule(name)
            assert (layer.activation_scheme, layer.rounding, layer.out_dtype) == (
                twin.activation_scheme,
                twin.rounding,
                twin.out_dtype,
            )


def test_tied_heads_are_stored_once_and_come_back_tied(tmp_path: Path) -> None:
    quantized = _drafter(tied=True)
    quantize_drafter(quantized)
    path = save_fp8_layers(quantized, tmp_path / "f.safetensors")
    assert sorted(load_file(path)) == ["head.0.weight_fp8", "head.0.weight_scale"]
    served = _drafter(tied=True)
    load_fp8_layers(served, path)
    assert isinstance(served.head[0], Fp8Linear)
    assert served.head[0] is served.head[1] is served.head[2]


def test_nothing_to_save_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no Fp8Linear"):
        save_fp8_layers(_drafter(), tmp_path / "f.safetensors")
    assert not list(tmp_path.iterdir())


def _saved(tmp_path: Path) -> Path:
    quantized = _drafter()
    quantize_drafter(quantized, include_projections=True)
    return save_fp8_layers(quantized, tmp_path / "f.safetensors")


def _rewrite(path: Path, edit_tensors=None, edit_meta=None) -> Path:  # type: ignore[no-untyped-def]
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(path)
    if edit_tensors:
        edit_tensors(tensors)
    if edit_meta:
        meta = edit_meta(meta)
    out = path.with_name("edited.safetensors")
    save_file(tensors, str(out), metadata=meta)
    return out


def _layers(meta: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return json.loads(meta["arctic_fp8_layers"])


def _with(meta: dict[str, str], change) -> dict[str, str]:  # type: ignore[no-untyped-def]
    header = _layers(meta)
    change(header)
    return {"arctic_fp8_layers": json.dumps(header)}


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("other module", r"'head.0'.*saved \(512, 64\), but \['head.0'\] has another shape"),
        ("version", "format version 2 is not supported"),
        ("missing tensor", "'proj.1'.*weight_fp8 or weight_scale is missing"),
        ("wrong dtype", r"'head.2'.*weight_fp8 is torch.bfloat16"),
        ("bad scale", r"'head.1'.*weight_scale must be finite and > 0"),
        ("unknown layer", r"\['lm_head'\] is not an nn.Linear"),
        ("no metadata", "no 'arctic_fp8_layers' metadata"),
    ],
)
def test_a_file_that_does_not_fit_is_refused_and_nothing_changes(
    tmp_path: Path, kind: str, message: str
) -> None:
    path = _saved(tmp_path)
    target = _drafter()
    if kind == "other module":
        target = TinyMLPSpeculator(vocab=256, emb_dim=64, inner=64).to(torch.bfloat16)
    elif kind == "version":
        path = _rewrite(path, edit_meta=lambda m: _with(m, lambda h: h.update(version=2)))
    elif kind == "missing tensor":
        path = _rewrite(path, edit_tensors=lambda t: t.pop("proj.1.weight_scale"))
    elif kind == "wrong dtype":
        path = _rewrite(
            path,
            edit_tensors=lambda t: t.update(
                {"head.2.weight_fp8": t["head.2.weight_fp8"].to(torch.bfloat16)}
            ),
        )
    elif kind == "bad scale":
        path = _rewrite(
            path,
            edit_tensors=lambda t: t["head.1.weight_scale"].__setitem__(3, -1.0),
        )
    elif kind == "unknown layer":
        path = _rewrite(
            path,
            edit_meta=lambda m: _with(
                m, lambda h: h["layers"]["head.2"]["aliases"].append("lm_head")
            ),
        )
    elif kind == "no metadata":
        path = _rewrite(path, edit_meta=lambda m: {"format": "pt"})
    before = copy.deepcopy(target)
    with pytest.raises(ValueError, match=message):
        load_fp8_layers(target, path)
    assert not any(isinstance(m, Fp8Linear) for m in target.modules())
    for (k, v), (_, w) in zip(
        target.state_dict().items(), before.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k


def test_a_missing_or_foreign_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_fp8_layers(_drafter(), tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_fp8_layers(_drafter(), junk)


def test_from_fp8_checks_what_it_is_given() -> None:
    q = torch.zeros(8, 16, dtype=FP8_DTYPE)
    ones = torch.ones(8)
    with pytest.raises(TypeError, match=r"must be torch\.float8_e4m3fn"):
        Fp8Linear.from_fp8(q.float(), ones, out_dtype=torch.float32)
    with pytest.raises(ValueError, match=r"one scale per output row \(8\), got \(7,\)"):
        Fp8Linear.from_fp8(q, torch.ones(7), out_dtype=torch.float32)
    with pytest.raises(ValueError, match="finite and > 0"):
        Fp8Linear.from_fp8(q, torch.zeros(8), out_dtype=torch.float32)
    with pytest.raises(ValueError, match="out_dtype is required"):
        Fp8Linear(q, weight_scale=ones)
    layer = Fp8Linear.from_fp8(q, ones.reshape(8, 1), out_dtype=torch.bfloat16, rounding="gptq")
    assert layer.rounding == "gptq" and layer.weight_scale.shape == (1, 8)
    shard = layer.rows(2, 6)
    assert shard.weight_fp8.untyped_storage().nbytes() == 4 * 16  # not the whole layer's
    assert (shard.rounding, shard.out_dtype, shard.weight_scale.shape) == (
        "gptq",
        torch.bfloat16,
        (1, 4),
    )
