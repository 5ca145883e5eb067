"""Patch: method 'arctic' / 'suffix' in EngineArgs.create_speculative_config (see LEDGER)."""

from __future__ import annotations

import logging
from typing import Any

from ..options import OPTIONS_ATTR
from . import is_patched, patch_attribute

logger = logging.getLogger("vllm.arctic")

PROPOSER_CLASS = "arctic_vllm.proposer.ArcticProposer"
# speculative_config["suffix_decoding_backend"] = "arctic_inference" leaves method 'suffix'
# to vLLM's own implementation (the baseline our benchmark compares against).
BACKEND_KEY = "suffix_decoding_backend"
BACKENDS = ("arctic_suffix", "arctic_inference")
# vLLM's V1 engine refuses method 'mlp_speculator' (0.32) or no longer has it (0.33): arctic
# serves IBM / vLLM MLPSpeculator checkpoints as method 'arctic' (arctic_drafters reads them).
MLP_SPECULATOR = "mlp_speculator"
SERVED = ("arctic", "suffix", MLP_SPECULATOR)


def translate(user_config: dict[str, Any], target_model_config: Any) -> tuple[dict[str, Any], Any]:
    """(the dict vLLM's SpeculativeConfig gets, our resolved options) for a user's config."""
    from ..options import parse_options, resolve_options

    options, passthrough = parse_options(user_config)
    options = resolve_options(options, target_model_config.hf_config)
    vllm_config = {
        "method": "custom_class",
        "model": PROPOSER_CLASS,
        "num_speculative_tokens": options.num_speculative_tokens,
        **passthrough,
    }
    return vllm_config, options


# vLLM's --spec-method / --spec-model / --spec-tokens, merged into the dict by the original
# function; merged here first so `--spec-method arctic` reaches the translation too.
_CLI_FLAGS = (
    ("spec_method", "method"),
    ("spec_model", "model"),
    ("spec_tokens", "num_speculative_tokens"),
)


def _merge_cli_flags(engine_args: Any) -> None:
    for attr, key in _CLI_FLAGS:
        value = getattr(engine_args, attr, None)
        if value is None:
            continue
        config = dict(engine_args.speculative_config or {})
        if key in config:
            flag = "--" + attr.replace("_", "-")
            raise ValueError(f"{flag} and --speculative-config['{key}'] are mutually exclusive")
        config[key] = value
        engine_args.speculative_config = config
        setattr(engine_args, attr, None)


def apply() -> bool:
    from vllm.engine.arg_utils import EngineArgs

    if is_patched(EngineArgs, "create_speculative_config"):
        return False

    def create_speculative_config(
        self: Any, target_model_config: Any, target_parallel_config: Any
    ) -> Any:
        _merge_cli_flags(self)
        user = self.speculative_config
        method = user.get("method") if isinstance(user, dict) else None
        backend = user.get(BACKEND_KEY, "arctic_suffix") if isinstance(user, dict) else None
        if isinstance(user, dict) and BACKEND_KEY in user:
            # Checked before either path: an unknown backend must not fall back silently.
            from ..exceptions import ArcticConfigError

            if backend not in BACKENDS or method != "suffix":
                raise ArcticConfigError(
                    f"speculative_config[{BACKEND_KEY!r}] = {backend!r}: must be one of "
                    f"{BACKENDS}, with method 'suffix'"
                )
        if method not in SERVED or backend == "arctic_inference":
            if isinstance(user, dict) and BACKEND_KEY in user:
                user = dict(user)
                del user[BACKEND_KEY]
                self.speculative_config = user
            return original(self, target_model_config, target_parallel_config)
        from ..plugin import UNSERVABLE

        if UNSERVABLE:
            from ..exceptions import UnsupportedVllmError

            raise UnsupportedVllmError(
                f"speculative_config method {method!r} cannot be served by arctic-vllm on "
                f"this vLLM: {'; '.join(UNSERVABLE)}. Use a vLLM arctic-vllm is tested with "
                "(see its README), or another method"
            )
        user = {k: v for k, v in user.items() if k != BACKEND_KEY}
        if method == MLP_SPECULATOR:
            logger.info("arctic: method 'mlp_speculator' is served as method 'arctic'")
            user["method"] = "arctic"
        translated, options = translate(user, target_model_config)
        self.speculative_config = translated
        try:
            spec = original(self, target_model_config, target_parallel_config)
        finally:
            self.speculative_config = user
        setattr(spec, OPTIONS_ATTR, options)
        logger.info("arctic: speculative_config method %r served by arctic: %s", method, options)
        return spec

    original = patch_attribute(EngineArgs, "create_speculative_config", create_speculative_config)
    return True
