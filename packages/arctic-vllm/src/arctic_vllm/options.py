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

METHODS = ("arctic", "suffix")
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


@dataclass(frozen=True)
class ArcticOptions:
    method: str  # "arctic": drafter (+ suffix when enabled); "suffix": suffix only
    # K: most draft tokens per request per step; None until resolve_options() has read the
    # drafter (method 'arctic' defaults to its n_predict, or 16 with suffix decoding).
    num_speculative_tokens: int | None
    drafter_path: str | None = None  # the drafter checkpoint directory (method "arctic")
    enable_suffix_decoding: bool = False  # method "arctic": hybrid with suffix decoding
    # Suffix decoding (vLLM's suffix_decoding_* names map onto these).
    suffix_max_depth: int = 24  # the suffix trees' depth: vLLM's default (measured best here)
    suffix_max_cached_requests: int | None = 10000  # global tree: request budget (0: off)
    suffix_max_cached_tokens: int | None = None  # global tree: token budget (None: no cap)
    suffix_max_spec_factor: float = 1.0  # draft cap = factor * match length + offset
    suffix_max_spec_offset: float = 0.0
    suffix_min_token_prob: float = 0.1  # stop the draft below this path probability
    suffix_eviction: str = "lru"  # "lru" or "fifo" over the global tree
    # arctic-suffix's draft extension: a path draft that stops short goes on from a fresh
    # match of context + draft (through self-repeating spans), up to 2x its first cap.
    suffix_extend: bool = True
    # arctic-suffix's adaptive draft cap (False: the anchor's factor * match length rule);
    # off by default: with extension on it drafted no further (tools/bench_vllm.py).
    suffix_adaptive: bool = False
    suffix_namespace_source: str = "none"  # "none", "lora" (adapter name) or "request"
    # Drafter.
    drafter_fp8: bool = False  # FP8 (e4m3) LM heads (arctic-kernels)
    # int8 weight-only heads + projections (arctic-kernels Int8Linear: a fused CPU kernel
    # reading 1 byte per weight). None: on exactly where the drafter runs on the CPU.
    drafter_int8: bool | None = None
    drafter_cuda_graph: bool = True  # capture the draft loop per padded batch size on CUDA
    # Without CUDA graphs (the CPU): torch.compile the draft loop at start-up (seconds, once
    # per process); measured here 1.5x faster drafts inside vLLM. Eager if it fails.
    drafter_compile: bool = True
    # At temperature > 0 the drafter samples its draft from its own distribution and hands
    # that distribution to vLLM's rejection sampler (lossless either way); measured on the
    # bundled drafters: 3.9x the accepted length of argmax drafts at T=1. False: argmax.
    drafter_sampling: bool = True
    # Throttling (arctic-runtime SpeculationPolicy).
    soft_batch_cap: int | None = None  # above: draft length tapers
    hard_batch_cap: int | None = None  # at and above: no speculation
    backoff_threshold: float = 0.1  # a request accepting less backs off on its own
    # Hybrid: the drafter's time relative to one step; None measures it online. The drafter
    # runs only when its expected extra tokens pay for that time.
    hybrid_drafter_cost: float | None = None


# option name -> ArcticOptions field.
_ALIASES: dict[str, str] = {
    "model": "drafter_path",
    "enable_suffix_decoding": "enable_suffix_decoding",
    # vLLM's names
    "suffix_decoding_max_tree_depth": "suffix_max_depth",
    "suffix_decoding_max_cached_requests": "suffix_max_cached_requests",
    "suffix_decoding_max_spec_factor": "suffix_max_spec_factor",
    "suffix_decoding_min_token_prob": "suffix_min_token_prob",
    # Arctic Inference's names
    "suffix_cache_max_depth": "suffix_max_depth",
    "suffix_max_cached_requests": "suffix_max_cached_requests",
    "suffix_max_spec_factor": "suffix_max_spec_factor",
    "suffix_max_spec_offset": "suffix_max_spec_offset",
    "suffix_min_token_prob": "suffix_min_token_prob",
    # ours
    "suffix_decoding_max_cached_tokens": "suffix_max_cached_tokens",
    "suffix_decoding_max_spec_offset": "suffix_max_spec_offset",
    "suffix_decoding_eviction": "suffix_eviction",
    "suffix_decoding_adaptive": "suffix_adaptive",
    "suffix_decoding_extend": "suffix_extend",
    "suffix_decoding_namespace": "suffix_namespace_source",
    "drafter_fp8": "drafter_fp8",
    "drafter_int8": "drafter_int8",
    "drafter_cuda_graph": "drafter_cuda_graph",
    "drafter_compile": "drafter_compile",
    "drafter_sampling": "drafter_sampling",
    "soft_batch_cap": "soft_batch_cap",
    "hard_batch_cap": "hard_batch_cap",
    "backoff_threshold": "backoff_threshold",
    "hybrid_drafter_cost": "hybrid_drafter_cost",
}
# Keys of the user's dict that stay with vLLM (fields of its SpeculativeConfig).
_VLLM_PASSTHROUGH = ("enforce_eager", "max_model_len", "disable_padded_drafter_batch")
_BOOL_FIELDS = (
    "enable_suffix_decoding",
    "drafter_fp8",
    "drafter_cuda_graph",
    "drafter_compile",
    "drafter_sampling",
    "suffix_adaptive",
    "suffix_extend",
)
# Options that only a drafter reads: an error with method "suffix".
_DRAFTER_FIELDS = (
    "drafter_path",
    "enable_suffix_decoding",
    "drafter_fp8",
    "drafter_int8",
    "drafter_cuda_graph",
    "drafter_compile",
    "drafter_sampling",
    "hybrid_drafter_cost",
)


# vLLM's rejection sampler verifies at most MAX_SPEC_LEN (128) draft tokens per request per
# step and asserts it mid-serving (a bare AssertionError after start-up): refused up front.
MAX_SPECULATIVE_TOKENS = 128


def _check_int(
    name: str, value: Any, low: int, allow_none: bool = False, high: int | None = None
) -> None:
    if value is None and allow_none:
        return
    bad = isinstance(value, bool) or not isinstance(value, int) or value < low
    if not bad and high is not None and value > high:
        bad = True
    if bad:
        span = f">= {low}" if high is None else f"in {low}..{high}"
        raise ArcticConfigError(
            f"speculative_config[{name!r}] must be an int {span}, got {value!r}"
        )


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ArcticConfigError(
            f"speculative_config[{name!r}] must be true or false, got {value!r}"
        )


def _check_float(name: str, value: Any, low: float, high: float | None = None) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        span = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ArcticConfigError(
            f"speculative_config[{name!r}] must be a number {span}, got {value!r}"
        )


def parse_options(config: dict[str, Any]) -> tuple[ArcticOptions, dict[str, Any]]:
    """Split a user's speculative_config into our options and the keys vLLM keeps.

    Raises ArcticConfigError naming the first bad key or value. Does not touch the disk:
    `check_drafter` does that.
    """
    config = {k.replace("-", "_"): v for k, v in config.items()}
    method = config.pop("method", None)
    if method not in METHODS:
        raise ArcticConfigError(
            f"speculative_config['method'] must be one of {METHODS}, got {method!r}"
        )
    k = config.pop("num_speculative_tokens", None)
    passthrough = {key: config.pop(key) for key in _VLLM_PASSTHROUGH if key in config}
    fields: dict[str, Any] = {"method": method}
    origin: dict[str, str] = {}
    for key, value in config.items():
        if key not in _ALIASES:
            valid = sorted({"method", "num_speculative_tokens", *_ALIASES, *_VLLM_PASSTHROUGH})
            raise ArcticConfigError(
                f"unknown speculative_config option {key!r} for method {method!r}; valid "
                f"options: {', '.join(valid)}"
            )
        field = _ALIASES[key]
        if field in origin:
            raise ArcticConfigError(
                f"speculative_config sets {field} twice: {origin[field]!r} and {key!r}"
            )
        origin[field] = key
        fields[field] = value
    name = {f: origin.get(f, f) for f in (f.name for f in dataclasses.fields(ArcticOptions))}

    if method == "suffix":
        for field in _DRAFTER_FIELDS:
            if field in origin:
                raise ArcticConfigError(
                    f"speculative_config[{origin[field]!r}] needs method 'arctic' (a drafter); "
                    "method 'suffix' serves suffix decoding alone"
                )
        fields["enable_suffix_decoding"] = True
    elif fields.get("drafter_path") is None:
        raise ArcticConfigError(
            "method 'arctic' needs speculative_config['model']: the drafter checkpoint "
            "directory (config.json + model.safetensors, or an Arctic Inference checkpoint)"
        )
    if k is None:
        # Suffix drafts are cheap to propose and their length adapts; the drafter's heads
        # bound K for method 'arctic' unless suffix decoding may draft further.
        k = 16 if method == "suffix" else None
    if k is not None:
        _check_int("num_speculative_tokens", k, 1, high=MAX_SPECULATIVE_TOKENS)
    fields["num_speculative_tokens"] = k

    for f in _BOOL_FIELDS:
        if f in fields:
            _check_bool(name[f], fields[f])
    if "suffix_max_depth" in fields:
        _check_int(name["suffix_max_depth"], fields["suffix_max_depth"], 1)
    for f in ("suffix_max_cached_requests", "suffix_max_cached_tokens"):
        if f in fields:
            _check_int(name[f], fields[f], 0, allow_none=True)
    for f in ("soft_batch_cap", "hard_batch_cap"):
        if f in fields:
            _check_int(name[f], fields[f], 1, allow_none=True)
    for f in ("suffix_max_spec_factor", "suffix_max_spec_offset"):
        if f in fields:
            _check_float(name[f], fields[f], 0.0 if f.endswith("factor") else -1e9)
    for f in ("suffix_min_token_prob", "backoff_threshold"):
        if f in fields:
            _check_float(name[f], fields[f], 0.0, 1.0)
    if fields.get("drafter_int8") is not None:
        _check_bool(name["drafter_int8"], fields["drafter_int8"])
    if fields.get("drafter_int8") and fields.get("drafter_fp8"):
        raise ArcticConfigError(
            f"speculative_config[{name['drafter_int8']!r}] and [{name['drafter_fp8']!r}] "
            "exclude each other: choose one weight format for the drafter"
        )
    if fields.get("hybrid_drafter_cost") is not None:
        _check_float(name["hybrid_drafter_cost"], fields["hybrid_drafter_cost"], 0.0)
    if fields.get("suffix_eviction", "lru") not in ("lru", "fifo"):
        raise ArcticConfigError(
            f"speculative_config[{name['suffix_eviction']!r}] must be 'lru' or 'fifo', got "
            f"{fields['suffix_eviction']!r}"
        )
    if fields.get("suffix_namespace_source", "none") not in NAMESPACE_SOURCES:
        raise ArcticConfigError(
            f"speculative_config[{name['suffix_namespace_source']!r}] must be one of "
            f"{NAMESPACE_SOURCES}, got {fields['suffix_namespace_source']!r}"
        )
    soft, hard = fields.get("soft_batch_cap"), fields.get("hard_batch_cap")
    if soft is not None and hard is not None and hard < soft:
        raise ArcticConfigError(f"hard_batch_cap={hard} must be >= soft_batch_cap={soft}")
    if fields.get("drafter_path") is not None:
        if not isinstance(fields["drafter_path"], str | os.PathLike):
            raise ArcticConfigError(
                f"speculative_config[{name['drafter_path']!r}] must be the drafter checkpoint "
                f"directory (a path), got {fields['drafter_path']!r}"
            )
        fields["drafter_path"] = os.fspath(fields["drafter_path"])
    return ArcticOptions(**fields), passthrough


def resolve_options(options: ArcticOptions, target_hf_config: Any) -> ArcticOptions:
    """Load and check the drafter against the target; fill in the default K.

    Runs at start-up in the process that builds the engine config, so a missing path, a
    broken checkpoint or a drafter made for another model fails before any worker starts.
    """
    if options.method != "arctic":
        return options
    from arctic_drafters import (
        CheckpointError,
        IncompatibleTargetError,
        check_compatible,
        load_drafter,
    )

    path = options.drafter_path
    assert path is not None
    if not os.path.isdir(path):
        raise ArcticConfigError(
            f"speculative_config['model'] = {path!r} is not a directory (the drafter "
            "checkpoint: config.json + model.safetensors)"
        )
    try:
        drafter = load_drafter(path)
        check_compatible(drafter, target_hf_config)
    except (CheckpointError, IncompatibleTargetError) as exc:
        raise ArcticConfigError(f"drafter {path!r}: {exc}") from exc
    k = options.num_speculative_tokens
    n_predict = drafter.config.n_predict
    if k is None:
        k = max(n_predict, 16) if options.enable_suffix_decoding else n_predict
    elif k < n_predict and not options.enable_suffix_decoding:
        pass  # fewer heads used than trained: allowed (DrafterProposer takes min(K, n))
    return dataclasses.replace(options, num_speculative_tokens=k)
