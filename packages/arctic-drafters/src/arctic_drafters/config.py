"""Config dataclasses of the two drafter families.

Field names follow the anchor's (Arctic Inference / IBM MLPSpeculator) where one exists, so a
reader can map them onto an imported ``config.json``; ``hidden_size`` is the anchor's
``emb_dim`` / ``input_hidden_dim`` (the target's hidden size).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from .layers import unique_count

LSTM_METHODS = ("sum_lstm", "sum_rnn")

# Upper limits on a drafter's sizes, checked before any tensor is allocated: a typo such as
# vocab_size 1e11 must fail in microseconds, not after trying to allocate terabytes. Each is
# far above any published model, so no real drafter is refused.
MAX_VOCAB_SIZE = 1 << 22  # 4,194,304: 16x the largest LLM vocabularies (~256k, Gemma)
MAX_HIDDEN_SIZE = 1 << 16  # 65,536: 4x the widest published target (Llama 3.1 405B: 16,384)
MAX_INNER_DIM = 1 << 16  # the drafter's state; published drafters are narrower than the target
MAX_N_PREDICT = 32  # published drafters have 3-8 heads; P(32 drafts accepted) is ~0
# 2**35 = 34.4 B parameters (137 GB in float32): ~10x a large drafter (4 untied heads, a
# 128k vocabulary, an 8192-wide target, inner_dim 3584: 3.7 B).
MAX_PARAMETERS = 1 << 35
SIZE_LIMITS = {
    "vocab_size": MAX_VOCAB_SIZE,
    "hidden_size": MAX_HIDDEN_SIZE,
    "inner_dim": MAX_INNER_DIM,
    "n_predict": MAX_N_PREDICT,
}


def _positive(name: str, value: object, limit: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if value > limit:
        raise ValueError(
            f"{name} must be <= {limit}, got {value} (a limit in arctic_drafters.config, "
            "far above any published model: a typo?)"
        )


def _flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def _state_weights(n_predict: int, inner_dim: int) -> tuple[float, float]:
    # arXiv 2404.19124: the state and token embedding are mixed with weights chosen so the
    # state's share decays to 1/2 over n_predict steps while the sum keeps unit variance.
    state_weight = 0.5 ** (0.5 / n_predict)
    emb_weight = math.sqrt((1 - state_weight**2) * (inner_dim / 2))
    return state_weight, emb_weight


@dataclass(frozen=True)
class _SpeculatorConfigBase:
    kind: ClassVar[str]

    vocab_size: int  # the target's vocabulary; the heads emit logits over it
    hidden_size: int  # the target's hidden size (the anchor's emb_dim / input_hidden_dim)
    inner_dim: int  # width of the drafter's recurrent state
    n_predict: int = 3  # heads, i.e. the most tokens one call can draft
    tie_weights: bool = True  # share embedding, norm and head across heads (smaller file)
    scale_input: bool = True  # RMS-normalise the target state first; its scale varies by model
    norm_eps: float = 1e-6  # the anchor's MLPSpeculatorLayerNorm epsilon
    # The target architectures it was trained for (Arctic's config.json field, e.g.
    # ("LlamaForCausalLM",)); check_compatible refuses others. Empty: unknown, not checked.
    base_model_archs: tuple[str, ...] = field(default=(), kw_only=True)

    def _validate_common(self) -> None:
        for name, limit in SIZE_LIMITS.items():
            _positive(name, getattr(self, name), limit)
        for name in ("tie_weights", "scale_input"):
            _flag(name, getattr(self, name))
        if not isinstance(self.norm_eps, float) or not 0.0 < self.norm_eps < 1.0:
            raise ValueError(f"norm_eps must be a float in (0, 1), got {self.norm_eps!r}")
        archs = self.base_model_archs
        if isinstance(archs, list):  # e.g. an HF config's `architectures`; stored hashable
            archs = tuple(archs)
            object.__setattr__(self, "base_model_archs", archs)
        if not isinstance(archs, tuple) or not all(isinstance(a, str) and a for a in archs):
            raise ValueError(
                f"base_model_archs must be a tuple (or list) of architecture names, got {archs!r}"
            )

    def _validate_parameter_count(self) -> None:
        count = self.parameter_count()
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"this config has {count} parameters, more than MAX_PARAMETERS={MAX_PARAMETERS} "
                "(arctic_drafters.config): lower inner_dim or n_predict, or set tie_weights"
            )

    def parameter_count(self) -> int:
        """Parameters of the model this config builds, computed without building it."""
        n_shared = unique_count(self.n_predict, self.tie_weights)
        n_proj = unique_count(self.n_predict, self.tie_weights, proj=True)
        v, h, d, gates = self.vocab_size, self.hidden_size, self.inner_dim, self._gates()
        norms = 2 * d * (2 if gates > 1 else 1)  # weight + bias; LSTM: cell_ln and state_ln
        per_copy = v * self._emb_width() + norms + v * d  # emb, norm(s), head
        return n_shared * per_copy + gates * d * (h + (n_proj - 1) * d)  # + projections

    def _gates(self) -> int:  # projection outputs per state element
        return 1

    def _emb_width(self) -> int:
        return self.inner_dim

    @property
    def emb_scale(self) -> float:
        """Factor on the token embedding relative to the projected state (the anchor's
        ``emb_weight / state_weight``; the norm that follows absorbs the common factor)."""
        state_weight, emb_weight = _state_weights(self.n_predict, self.inner_dim)
        return emb_weight / state_weight

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self), "base_model_archs": list(self.base_model_archs)}


@dataclass(frozen=True)
class MLPSpeculatorConfig(_SpeculatorConfigBase):
    """IBM's MLPSpeculator (arXiv 2404.19124): ``state = GELU(LN(proj(state) + a*emb(tok)))``."""

    kind: ClassVar[str] = "mlp"

    def __post_init__(self) -> None:
        self._validate_common()
        if self.tie_weights and self.n_predict < 2:
            raise ValueError(f"tie_weights needs n_predict >= 2, got n_predict={self.n_predict}")
        self._validate_parameter_count()


@dataclass(frozen=True)
class LSTMSpeculatorConfig(_SpeculatorConfigBase):
    """Arctic's LSTM speculator: ``method="sum_lstm"`` gates the state like an LSTM cell;
    ``"sum_rnn"`` is the MLP step under Arctic's weight layout."""

    kind: ClassVar[str] = "lstm"

    method: str = "sum_lstm"  # "sum_lstm" or "sum_rnn"
    tie_lstm_embs: bool = True  # one token embedding feeds all four gates (the anchor's default)

    def _gates(self) -> int:  # forget, input, output, cell candidate
        return 4 if self.method == "sum_lstm" else 1

    def _emb_width(self) -> int:
        untied = self.method == "sum_lstm" and not self.tie_lstm_embs
        return 4 * self.inner_dim if untied else self.inner_dim

    def __post_init__(self) -> None:
        self._validate_common()
        _flag("tie_lstm_embs", self.tie_lstm_embs)
        if self.method not in LSTM_METHODS:
            raise ValueError(f"method must be one of {LSTM_METHODS}, got {self.method!r}")
        if self.tie_weights and self.n_predict < 2:
            raise ValueError(f"tie_weights needs n_predict >= 2, got n_predict={self.n_predict}")
        self._validate_parameter_count()


SpeculatorConfig = MLPSpeculatorConfig | LSTMSpeculatorConfig


def config_from_dict(data: dict[str, Any]) -> SpeculatorConfig:
    """Inverse of ``to_dict``; unknown fields are an error so typos do not pass silently."""
    data = dict(data)
    kind = data.pop("kind", None)
    classes: dict[str, type[Any]] = {"mlp": MLPSpeculatorConfig, "lstm": LSTMSpeculatorConfig}
    if kind not in classes:
        raise ValueError(f"config kind must be 'mlp' or 'lstm', got {kind!r}")
    cls = classes[kind]
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {kind} config fields: {unknown}")
    return cls(**data)  # type: ignore[no-any-return]
