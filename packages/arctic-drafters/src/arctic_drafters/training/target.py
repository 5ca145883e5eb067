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


def load_target_model(path: str, dtype: Any = None) -> Any:
    """The causal LM of a model directory (float32 unless ``dtype``), frozen, in eval mode;
    no tokenizer (training and evaluation read token ids only)."""
    import torch

    model = require_transformers().AutoModelForCausalLM.from_pretrained(
        path, dtype=dtype if dtype is not None else torch.float32
    )
    return model.eval().requires_grad_(False)


def load_target(path: str, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a causal LM directory, frozen and in eval mode."""
    model = load_target_model(path, dtype)
    return model, require_transformers().AutoTokenizer.from_pretrained(path)


def max_positions(model: Any) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)
