"""The anchor's tensor layouts, renamed to ours (``emb.j``, ``proj.j``, ``ln.j`` /
``cell_ln.j`` / ``state_ln.j``, ``head.j``).

Read: every layout Arctic Inference 0.3.0's loaders accept, and ArcticTraining's raw output.

- The MLP step (IBM / vLLM ``MLPSpeculator``, ``ArcticMLPSpeculator``, Arctic ``sum_rnn``):
  ``emb.i``, ``proj.i``, ``ln.i``, ``head.i``; Arctic's ``sum_rnn`` wraps each module in a
  one-element Sequential (``emb.i.0.weight``).
- ``sum_lstm`` with separate gates, as ArcticTraining saves it (the published checkpoints):
  ``{forget,input,output,cell}_proj.i``, stacked in that order into one (4D, in) matrix as
  ``ArcticLSTMSpeculator.load_weights`` does; ``forget_emb.0`` and, under ``tie_lstm_embs``,
  its copies ``input_emb.0`` / ``cell_emb.0`` / ``output_emb.0`` (Arctic drops them; here each
  must equal ``forget_emb.0``).
- ``sum_lstm`` combined: ``projs.i`` (Arctic Inference's own module, the same gate order).
- Under ``tie_weights`` a shared tensor may be repeated under every head's index (``torch.save``
  of a ModuleList that repeats one module) or stored once; repeats must be identical.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .config import LSTMSpeculatorConfig, SpeculatorConfig
from .exceptions import CheckpointError
from .layers import tied_index, tied_proj_index
from .strict_load import HEAD_KEY

# The four D-row blocks of an LSTM projection (and of untied LSTM embeddings), in order:
# ArcticLSTMSpeculator.load_weights concatenates them so, generate_states splits them so.
LSTM_GATES = ("forget", "input", "output", "cell")
_MLP_KEY = re.compile(r"^(emb|proj|ln)\.(\d+)(?:\.0)?\.(weight|bias)$")
_LSTM_PROJ = re.compile(r"^(?:(forget|input|output|cell)_proj|projs)\.(\d+)\.weight$")
_LSTM_NORM = re.compile(r"^(cell_ln|state_ln)\.(\d+)\.(weight|bias)$")
_LSTM_EMB = re.compile(r"^(forget|input|output|cell)_emb\.0\.weight$")


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    return a.is_meta or b.is_meta or torch.equal(a, b)  # meta: the shape-only check


class _Renamed:
    """The native state being built; a second tensor for a tied key must equal the first."""

    def __init__(self, config: SpeculatorConfig) -> None:
        self.tie = config.tie_weights
        self.state: dict[str, torch.Tensor] = {}

    def put(self, native: str, key: str, value: torch.Tensor) -> None:
        if native in self.state and not _same(self.state[native], value):
            raise CheckpointError(
                f"{key} differs from the tensor it is tied to ({native}) under tie_weights=true"
            )
        self.state[native] = value

    def put_indexed(
        self, module: str, index: int, param: str, key: str, value: torch.Tensor
    ) -> None:
        j = tied_proj_index(index, self.tie) if module == "proj" else tied_index(index, self.tie)
        self.put(f"{module}.{j}.{param}", key, value)


def anchor_to_native(
    state: Mapping[str, torch.Tensor], config: SpeculatorConfig
) -> dict[str, torch.Tensor]:
    """The anchor's tensors (``speculator.`` prefix already removed) under our names. Keys of
    no known layout are kept as they are, so the strict load names them."""
    out = _Renamed(config)
    if isinstance(config, LSTMSpeculatorConfig) and config.method == "sum_lstm":
        _lstm_to_native(state, config, out)
        return out.state
    for key, value in state.items():
        if head := HEAD_KEY.match(key):
            out.put_indexed("head", int(head.group(1)), "weight", key, value)
        elif match := _MLP_KEY.match(key):
            out.put_indexed(match.group(1), int(match.group(2)), match.group(3), key, value)
        else:
            out.state[key] = value
    return out.state


def _lstm_to_native(
    state: Mapping[str, torch.Tensor], config: LSTMSpeculatorConfig, out: _Renamed
) -> None:
    combined: dict[int, tuple[str, torch.Tensor]] = {}
    gates: dict[int, dict[str, torch.Tensor]] = {}
    embs: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if proj := _LSTM_PROJ.match(key):
            index = int(proj.group(2))
            if proj.group(1) is None:
                combined[index] = (key, value)
            else:
                gates.setdefault(index, {})[proj.group(1)] = value
        elif emb := _LSTM_EMB.match(key):
            embs[emb.group(1)] = value
        elif norm := _LSTM_NORM.match(key):
            out.put_indexed(norm.group(1), int(norm.group(2)), norm.group(3), key, value)
        elif head := HEAD_KEY.match(key):
            out.put_indexed("head", int(head.group(1)), "weight", key, value)
        else:
            out.state[key] = value
    if combined and gates:
        raise CheckpointError(
            f"the projections are stored twice: combined ({sorted(k for k, _ in combined.values())}) "
            f"and per gate (for heads {sorted(gates)}); keep one layout"
        )
    for index, (key, value) in combined.items():
        out.put_indexed("proj", index, "weight", key, value)
    for index, parts in sorted(gates.items()):
        names = [f"{gate}_proj.{index}.weight" for gate in LSTM_GATES]
        out.put_indexed("proj", index, "weight", names[0], _stack(parts, names))
    out.state["emb.0.weight"] = _lstm_embedding(embs, config)


def _stack(parts: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor:
    missing = [n for gate, n in zip(LSTM_GATES, names, strict=True) if gate not in parts]
    if missing:
        raise CheckpointError(f"separate-gate LSTM projections are incomplete: missing {missing}")
    shapes = {n: tuple(parts[g].shape) for g, n in zip(LSTM_GATES, names, strict=True)}
    if len(set(shapes.values())) != 1:
        raise CheckpointError(f"separate-gate LSTM projections differ in shape: {shapes}")
    return torch.cat([parts[g] for g in LSTM_GATES], dim=0)  # (4D, in)


def _lstm_embedding(embs: dict[str, torch.Tensor], config: LSTMSpeculatorConfig) -> torch.Tensor:
    """forget_emb alone under tie_lstm_embs (one embedding feeds every gate; its copies are
    checked and dropped), else the four side by side: (V, D) or (V, 4D)."""
    names = LSTM_GATES[:1] if config.tie_lstm_embs else LSTM_GATES
    absent = [f"{n}_emb.0.weight" for n in names if n not in embs]
    if absent:
        raise CheckpointError(
            f"LSTM embeddings do not fit tie_lstm_embs={str(config.tie_lstm_embs).lower()}: "
            f"missing {absent}"
        )
    if config.tie_lstm_embs:
        forget = embs["forget"]
        for name in LSTM_GATES[1:]:
            if name in embs and not _same(embs[name], forget):
                raise CheckpointError(
                    f"{name}_emb.0.weight differs from forget_emb.0.weight, which it is tied to "
                    "under tie_lstm_embs=true (Arctic Inference would drop it and use "
                    "forget_emb): set tie_lstm_embs to false if the four embeddings are separate"
                )
        return forget
    shapes = {f"{n}_emb.0.weight": tuple(embs[n].shape) for n in LSTM_GATES}
    if len(set(shapes.values())) != 1:
        raise CheckpointError(f"the four LSTM embeddings differ in shape: {shapes}")
    return torch.cat([embs[n] for n in LSTM_GATES], dim=-1)  # (V, 4D)
