"""Loading the target with transformers (the optional ``[train]`` extra)."""

from __future__ import annotations

from typing import Any

INSTALL_HINT = 'pip install "arctic-drafters[train]"'


def require_transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"training drafters needs transformers for the target model: {INSTALL_HINT}"
        ) from exc
    return transformers


def load_target_config(path: str) -> Any:
    """The target's transformers config alone (vocab and hidden size), without its weights."""
    return require_transformers().AutoConfig.from_pretrained(path)


def load_target(path: str, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a causal LM directory, frozen and in eval mode."""
    import torch

    transformers = require_transformers()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype if dtype is not None else torch.float32
    )
    model.eval().requires_grad_(False)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def max_positions(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)
