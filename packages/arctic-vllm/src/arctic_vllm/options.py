"""The options of ``speculative_config={"method": "arctic" | "suffix", ...}``, validated.

Accepted names: vLLM's own ``suffix_decoding_*`` options, Arctic Inference's names (so a
config written for it works unchanged), and ours. Everything else that is a field of vLLM's
SpeculativeConfig passes through to vLLM; any other key is an error naming the valid ones.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from .exceptions import ArcticConfigError
from .option_spec import OptionSpec, declared, option

METHODS = ("arctic", "suffix")
# The attribute of vLLM's SpeculativeConfig that carries our options to the workers.
OPTIONS_ATTR = "arctic_options"
NAMESPACE_SOURCES = ("none", "lora", "request")
# extra_args keys read per request (SamplingParams.extra_args).
REQUEST_SPECULATION = "speculation"  # False: no speculation for this request
REQUEST_MAX_TOKENS = "max_speculative_tokens"  # cap on draft tokens per step
REQUEST_NAMESPACE = "suffix_namespace"  # the global-tree namespace, when source="request"
# What the OpenAI server delivers for `vllm_xargs` values: its schema is str | int | float,
# so JSON `false` arrives as 0 and `"false"` as a string. Every spelling means the same.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def request_flag(key: str, value: Any) -> bool:
    """A per-request boolean from ``extra_args``: a bool, 0 / 1, or "true" / "false" (any
    case; also yes/no, on/off). Raises ValueError naming the key and the value otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError(
        f'extra_args[{key!r}] = {value!r} is not a boolean (true/false, 1/0, "true"/"false")'
    )


def undraftable(params: Any) -> str | None:
    """Why arctic must not draft for a request with these SamplingParams (None: it may):
    vLLM's rejection sampler applies neither min_p nor logit_bias to draft positions, so
    such a request is served undrafted (every token from vLLM's ordinary sampler)."""
    if (getattr(params, "min_p", 0.0) or 0.0) > 0.0:
        return "min_p"
    if getattr(params, "logit_bias", None):
        return "logit_bias"
    return None


def request_count(key: str, value: Any) -> int:
    """A per-request count >= 0 from ``extra_args``: an int, an integral float (3.0), or
    its decimal string ("3"). Raises ValueError naming the key and the value otherwise."""
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValueError(f"extra_args[{key!r}] = {value!r} is not an int >= 0")
    return number


# vLLM's rejection sampler verifies at most MAX_SPEC_LEN (128) draft tokens per request per
# step and asserts it mid-serving (a bare AssertionError after start-up): refused up front.
MAX_SPECULATIVE_TOKENS = 128


def _o(default: Any, kind: str, names: str | tuple[str, ...], help: str, **kw: Any) -> Any:
    """An ArcticOptions field declared as an option (see option_spec)."""
    named = (names,) if isinstance(names, str) else names
    return option(default, OptionSpec(kind, named, help, **kw))


@dataclass(frozen=True)
class ArcticOptions:
    """The options of methods "arctic" and "suffix", each declared once: its type and range,
    the names users write (vLLM's ``suffix_decoding_*`` first, then Arctic Inference's), its
    help (the README's table is checked against these), and whether only a drafter reads
    it. Built directly or by `parse_options`, it validates itself."""

    method: str  # "arctic": drafter (+ suffix when enabled); "suffix": suffix only
    # K (vLLM's own field): most draft tokens per request per step; None until
    # resolve_options() has read the drafter (method 'arctic': its n_predict, or 16 with
    # suffix decoding). At most vLLM's MAX_SPEC_LEN.
    num_speculative_tokens: int | None
    drafter_path: str | None = _o(None, "path", "model", "drafter checkpoint directory",
                                  nullable=True, drafter_only=True)  # fmt: skip
    enable_suffix_decoding: bool = _o(False, "bool", "enable_suffix_decoding",
                                      '"arctic": hybrid with suffix decoding', drafter_only=True)  # fmt: skip
    # Suffix decoding. Depth 24 is vLLM's default, measured best here.
    suffix_max_depth: int = _o(24, "int", ("suffix_decoding_max_tree_depth", "suffix_cache_max_depth"),
                               "suffix tree depth", low=1)  # fmt: skip
    suffix_max_cached_requests: int | None = _o(
        10000, "int", ("suffix_decoding_max_cached_requests", "suffix_cache_max_requests",
                             "suffix_max_cached_requests"),
        "global cache: request budget (0: off)", low=0, nullable=True)  # fmt: skip
    suffix_max_cached_tokens: int | None = _o(
        None, "int", "suffix_decoding_max_cached_tokens",
        "global cache: token budget (Arctic Inference issue #215)", low=0, nullable=True)  # fmt: skip
    suffix_max_spec_factor: float = _o(1.0, "float", ("suffix_decoding_max_spec_factor", "suffix_max_spec_factor"),
                                       "draft cap = factor x match length + offset", low=0.0)  # fmt: skip
    suffix_max_spec_offset: float = _o(0.0, "float", ("suffix_decoding_max_spec_offset", "suffix_max_spec_offset"),
                                       "the offset of that cap", low=-1e9)  # fmt: skip
    suffix_min_token_prob: float = _o(0.1, "float", ("suffix_decoding_min_token_prob", "suffix_min_token_prob"),
                                      "stop a draft below this path probability", low=0.0, high=1.0)  # fmt: skip
    suffix_eviction: str = _o("lru", "str", "suffix_decoding_eviction",
                              '"lru" or "fifo" over the global cache', choices=("lru", "fifo"))  # fmt: skip
    # arctic-suffix's draft extension: a path draft that stops short goes on from a fresh
    # match of context + draft (through self-repeating spans), up to 2x its first cap.
    suffix_extend: bool = _o(True, "bool", "suffix_decoding_extend",
                             "arctic-suffix's draft extension (false: the anchor's one-match draft)")  # fmt: skip
    # Off by default: with extension on it drafted no further (tools/bench_vllm.py).
    suffix_adaptive: bool = _o(False, "bool", "suffix_decoding_adaptive",
                               "arctic-suffix's adaptive draft cap (false: factor x match)")  # fmt: skip
    suffix_namespace_source: str = _o("none", "str", "suffix_decoding_namespace",
                                      'global tree per "lora" adapter or per "request"',
                                      choices=NAMESPACE_SOURCES)  # fmt: skip
    # Drafter.
    drafter_fp8: bool = _o(False, "bool", "drafter_fp8", "FP8 (e4m3) drafter heads",
                           drafter_only=True)  # fmt: skip
    # int8 weight-only heads + projections (arctic-kernels Int8Linear: a fused CPU kernel
    # reading 1 byte per weight). None: on exactly where the drafter runs on the CPU.
    drafter_int8: bool | None = _o(None, "bool", "drafter_int8", "int8 weight-only heads and projections",
                                   nullable=True, drafter_only=True)  # fmt: skip
    drafter_cuda_graph: bool = _o(True, "bool", "drafter_cuda_graph",
                                  "on CUDA the draft loop is one CUDA graph per padded batch size",
                                  drafter_only=True)  # fmt: skip
    # Measured here 1.5x faster drafts inside vLLM. Eager if it fails.
    drafter_compile: bool = _o(True, "bool", "drafter_compile",
                               "without CUDA graphs the draft loop is compiled at start-up",
                               drafter_only=True)  # fmt: skip
    # Lossless either way; measured on the bundled drafters: 3.9x the accepted length of
    # argmax drafts at T=1 (tools/bench_draft_sampling.py).
    drafter_sampling: bool = _o(True, "bool", "drafter_sampling",
                                "at temperature > 0 sample the draft and pass its distribution",
                                drafter_only=True)  # fmt: skip
    # Throttling (arctic-runtime SpeculationPolicy).
    soft_batch_cap: int | None = _o(None, "int", "soft_batch_cap", "above: draft length tapers",
                                    low=1, nullable=True)  # fmt: skip
    hard_batch_cap: int | None = _o(None, "int", ("hard_batch_cap", "hard_disable_by_batch_size"),
                                    "at and above: no speculation", low=1, nullable=True)  # fmt: skip
    # Arctic Inference's soft cap, with its meaning (effective_draft_limit).
    draft_request_limit: int | None = _o(None, "int", "disable_by_batch_size",
                                         "above: only this many requests draft", low=1,
                                         nullable=True)  # fmt: skip
    # vLLM 0.33's dynamic speculative decoding table, with vLLM's meaning.
    tokens_by_batch_size: tuple[tuple[int, int, int], ...] | None = _o(
        None, "schedule", "num_speculative_tokens_per_batch_size",
        "[[first, last, K], ...]: K per batch-size range", nullable=True)  # fmt: skip
    # Arctic Inference's K for suffix drafts beside a drafter (0: the default, 16).
    suffix_speculative_tokens: int = _o(0, "int", "suffix_speculative_tokens",
                                        "hybrid: most suffix draft tokens (0: 16)", low=0,
                                        high=MAX_SPECULATIVE_TOKENS)  # fmt: skip
    backoff_threshold: float = _o(0.1, "float", "backoff_threshold",
                                  "a request accepting less backs off on its own", low=0.0, high=1.0)  # fmt: skip
    # Issue 18: arctic-runtime's DraftPlanner, inside the caps above. Off by default until
    # the benchmark (tools/) has measured it at every batch size.
    cost_aware: bool = _o(False, "bool", "cost_aware",
                          "draft lengths by measured step cost and acceptance")  # fmt: skip
    # None measures it online; the drafter runs only when its extra tokens pay for it.
    hybrid_drafter_cost: float | None = _o(None, "float", "hybrid_drafter_cost",
                                           "the drafter's time relative to one engine step",
                                           low=0.0, nullable=True, drafter_only=True)  # fmt: skip

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ArcticConfigError(
                f"speculative_config['method'] must be one of {METHODS}, got {self.method!r}"
            )
        if self.num_speculative_tokens is not None:
            K_SPEC.check("num_speculative_tokens", self.num_speculative_tokens)
        for name, spec in OPTIONS.items():
            value = spec.check(spec.names[0], getattr(self, name))
            if value is not getattr(self, name):
                object.__setattr__(self, name, value)  # a PathLike becomes its str
        if self.method == "arctic" and self.drafter_path is None:
            raise ArcticConfigError(
                "method 'arctic' needs speculative_config['model']: the drafter checkpoint "
                "directory (config.json + model.safetensors, or an Arctic Inference checkpoint)"
            )
        if self.drafter_int8 and self.drafter_fp8:
            raise ArcticConfigError(
                "speculative_config['drafter_int8'] and ['drafter_fp8'] exclude each other: "
                "choose one weight format for the drafter"
            )
        soft, hard = self.soft_batch_cap, self.hard_batch_cap
        if soft is not None and hard is not None and hard < soft:
            raise ArcticConfigError(f"hard_batch_cap={hard} must be >= soft_batch_cap={soft}")


OPTIONS = declared(ArcticOptions)
K_SPEC = OptionSpec("int", ("num_speculative_tokens",), "most draft tokens per request per step",
                    low=1, high=MAX_SPECULATIVE_TOKENS)  # fmt: skip
# option name (every alias) -> ArcticOptions field.
_ALIASES: dict[str, str] = {name: field for field, spec in OPTIONS.items() for name in spec.names}
# Keys of the user's dict that stay with vLLM (fields of its SpeculativeConfig).
_VLLM_PASSTHROUGH = ("enforce_eager", "max_model_len", "disable_padded_drafter_batch")


def parse_options(config: dict[str, Any]) -> tuple[ArcticOptions, dict[str, Any]]:
    """Split a user's speculative_config into our options and the keys vLLM keeps: alias
    resolution, then each value checked by its declaration under the name the user wrote.

    Raises ArcticConfigError naming the first bad key or value. Reads no file:
    `resolve_options` checks the drafter against the target.
    """
    config = {k.replace("-", "_"): v for k, v in config.items()}
    method = config.pop("method", None)
    if method not in METHODS:
        raise ArcticConfigError(
            f"speculative_config['method'] must be one of {METHODS}, got {method!r}"
        )
    k = config.pop("num_speculative_tokens", None)
    passthrough = {key: config.pop(key) for key in _VLLM_PASSTHROUGH if key in config}
    fields: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in config.items():
        field = _ALIASES.get(key)
        if field is None:
            valid = sorted({"method", "num_speculative_tokens", *_ALIASES, *_VLLM_PASSTHROUGH})
            raise ArcticConfigError(
                f"unknown speculative_config option {key!r} for method {method!r}; valid "
                f"options: {', '.join(valid)}"
            )
        if field in origin:
            raise ArcticConfigError(
                f"speculative_config sets {field} twice: {origin[field]!r} and {key!r}"
            )
        spec = OPTIONS[field]
        if method == "suffix" and spec.drafter_only:
            raise ArcticConfigError(
                f"speculative_config[{key!r}] needs method 'arctic' (a drafter); method "
                "'suffix' serves suffix decoding alone"
            )
        origin[field] = key
        fields[field] = spec.check(key, value)
    if method == "suffix":
        fields["enable_suffix_decoding"] = True
    if k is None:
        # Suffix drafts are cheap to propose and their length adapts; the drafter's heads
        # bound K for method 'arctic' unless suffix decoding may draft further.
        k = (fields.get("suffix_speculative_tokens") or 16) if method == "suffix" else None
    if k is not None:
        K_SPEC.check("num_speculative_tokens", k)
    return ArcticOptions(method, k, **fields), passthrough


def resolve_options(options: ArcticOptions, target_hf_config: Any) -> ArcticOptions:
    """Check the drafter's config.json against the target; fill in the default K.

    Runs at start-up in the process that builds the engine config, so a missing path, a
    broken config or a drafter made for another model fails before any worker starts. A
    Hugging Face Hub id is resolved here (arctic_drafters.resolve_checkpoint: the cache, or a
    download), and the workers get its local directory. Only config.json is read here; the
    worker loads (and checks) the weights.
    """
    if options.method != "arctic":
        return options
    from arctic_drafters import (
        CheckpointError,
        IncompatibleTargetError,
        check_compatible,
        load_drafter_config,
        resolve_checkpoint,
    )

    path = options.drafter_path
    assert path is not None
    try:
        # A Hub id (e.g. an Arctic Inference drafter) becomes its cached snapshot here, so the
        # workers load a local directory and never touch the network themselves.
        local = resolve_checkpoint(path)
        config = load_drafter_config(local)
        check_compatible(config, target_hf_config)
    except (CheckpointError, IncompatibleTargetError) as exc:
        raise ArcticConfigError(f"drafter {path!r}: {exc}") from exc
    if not os.path.isdir(path):
        options = dataclasses.replace(options, drafter_path=str(local))
    k = options.num_speculative_tokens
    if k is None:
        # Fewer heads than trained may be asked for (the drafter drafts min(K, n_predict)).
        suffix_k = options.suffix_speculative_tokens or 16
        k = max(config.n_predict, suffix_k) if options.enable_suffix_decoding else config.n_predict
    return dataclasses.replace(options, num_speculative_tokens=k)
