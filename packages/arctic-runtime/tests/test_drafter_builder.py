"""build_drafter: one path from a checkpoint to a ready DrafterProposer."""

from __future__ import annotations

import pytest
import torch

from arctic_drafters import LSTMSpeculatorConfig, build_speculator, save_drafter
from arctic_kernels import Int8Linear
from arctic_runtime import ProposeRequest, build_drafter, loop_capture


def _speculator():
    torch.manual_seed(0)
    return build_speculator(LSTMSpeculatorConfig(64, 16, 16)).eval()


def _int8_layers(module: torch.nn.Module) -> int:
    return sum(isinstance(m, Int8Linear) for m in module.modules())


def test_from_a_checkpoint_directory_on_the_cpu_int8_and_compiled_by_default(tmp_path):
    save_drafter(_speculator(), tmp_path / "d")
    build = build_drafter(tmp_path / "d", max_batch_size=4)
    assert _int8_layers(build.speculator) > 0 and "int8 weights" in build.weights
    assert build.mode in ("compiled", "eager")  # eager only if torch.compile failed (logged)
    [d] = build.proposer.propose([ProposeRequest("r", 3, 1, torch.randn(16))])
    assert d is not None and len(d) == 3


def test_weights_none_keeps_the_layers_and_drafts_what_the_speculator_does():
    spec = _speculator()
    hidden, last = torch.randn(2, 16), torch.tensor([1, 2])
    want = spec.propose(hidden, last, 2).tolist()
    build = build_drafter(spec, weights="none", compile=False, num_tokens=2)
    assert _int8_layers(build.speculator) == 0 and build.weights == "" and build.mode == "eager"
    assert build.proposer.num_tokens == 2
    drafts = build.proposer.propose(
        [ProposeRequest(f"r{i}", 2, int(last[i]), hidden[i]) for i in range(2)]
    )
    assert [list(d.token_ids) for d in drafts if d is not None] == want


def test_num_tokens_is_capped_at_the_drafters_heads():
    assert (
        build_drafter(
            _speculator(), weights="none", compile=False, num_tokens=16
        ).proposer.num_tokens
        == 3
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weights": "int4"}, "weights must be one of"),
        ({"max_batch_size": 0}, "max_batch_size must be an int >= 1, got 0"),
        ({"num_tokens": 0}, "num_tokens must be >= 1, got 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_drafter(_speculator(), compile=False, **kwargs)


@pytest.mark.parametrize(
    ("device", "cuda_graph", "compile", "tp", "expected"),
    [
        ("cpu", True, True, None, "compiled"),  # no CUDA graphs off CUDA
        ("cpu", True, False, None, None),
        ("cuda", True, True, None, "cuda_graph"),
        ("cuda", False, True, None, "compiled"),
        ("cuda", False, False, None, None),
        ("cuda", True, True, object(), None),  # the TP runner drafts: nothing captured
    ],
)
def test_loop_capture_says_what_the_build_does_at_start_up(
    device, cuda_graph, compile, tp, expected
):
    got = loop_capture(device, cuda_graph=cuda_graph, compile=compile, tp_group=tp)
    assert got == expected


@pytest.mark.parametrize("compile", [True, False])
def test_the_build_captures_what_loop_capture_says(compile):
    build = build_drafter(_speculator(), max_batch_size=2, compile=compile)
    announced = loop_capture("cpu", cuda_graph=True, compile=compile, tp_group=None)
    assert (build.runner is not None) == (announced is not None)
