"""MLP and LSTM speculative-decoding draft heads (arXiv 2404.19124; Arctic Inference).

Public API; everything else in the package is private.
"""

from .checkpoint import check_compatible, load_drafter, load_drafter_config, save_drafter
from .config import LSTMSpeculatorConfig, MLPSpeculatorConfig, SpeculatorConfig
from .exceptions import (
    CheckpointError,
    DatasetError,
    ExportError,
    IncompatibleTargetError,
    TrainingStateError,
)
from .export import EXPORT_FORMATS, export_drafter
from .hub import resolve_checkpoint
from .layers import tied_index
from .lstm import LSTMSpeculator
from .mlp import MLPSpeculator
from .speculator import Speculator
from .strict_load import build_speculator

__version__ = "0.1.0"

__all__ = [
    "EXPORT_FORMATS",
    "CheckpointError",
    "DatasetError",
    "ExportError",
    "IncompatibleTargetError",
    "LSTMSpeculator",
    "LSTMSpeculatorConfig",
    "MLPSpeculator",
    "MLPSpeculatorConfig",
    "Speculator",
    "SpeculatorConfig",
    "TrainingStateError",
    "__version__",
    "build_speculator",
    "check_compatible",
    "export_drafter",
    "load_drafter",
    "load_drafter_config",
    "resolve_checkpoint",
    "save_drafter",
    "tied_index",
]
