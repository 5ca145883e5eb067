"""vLLM plugin: speculative_config methods "arctic" and "suffix", served by arctic.

Installed, it registers through the ``vllm.general_plugins`` entry point; nothing to import.
"""

from __future__ import annotations

from . import contract
from .exceptions import ArcticConfigError, PatchError, UnsupportedVllmError
from .options import ArcticOptions, parse_options
from .patches import LEDGER, PatchRecord
from .plugin import DISABLE_ENV, SUPPORTED_VLLM, register

__version__ = "0.1.0"

__all__ = [
    "DISABLE_ENV",
    "LEDGER",
    "SUPPORTED_VLLM",
    "ArcticConfigError",
    "ArcticOptions",
    "PatchError",
    "PatchRecord",
    "UnsupportedVllmError",
    "__version__",
    "contract",
    "parse_options",
    "register",
]
