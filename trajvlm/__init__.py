"""TrajVLM: TrajTok trajectory tokens as the vision connector of LLaVA-OneVision / LLaVA-Video models.

The ``trajvlm`` model type is registered with transformers' Auto classes (AutoConfig, AutoModel,
AutoModelForImageTextToText, AutoProcessor) when ``trajvlm.modeling`` is imported, which happens on first access to
any model, config or processor name of this package (``from trajvlm import TrajVLMConfig``). A bare ``import
trajvlm`` stays cheap for the command line. Nothing here imports deepspeed, lmms_eval or wandb.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TrajVLMConfig": "trajvlm.configuration",
    "TrajVLMForConditionalGeneration": "trajvlm.modeling",
    "TrajVLMModel": "trajvlm.modeling",
    "TrajVLMProcessor": "trajvlm.processing",
    "CONNECTORS": "trajvlm.connectors",
    "build_tiny_base": "trajvlm.training.base",
    "register": "trajvlm.modeling",
}
# Names whose use implies loading checkpoints through the Auto classes: import the module that registers them.
_REGISTERING = {"TrajVLMConfig", "TrajVLMForConditionalGeneration", "TrajVLMModel", "TrajVLMProcessor", "register"}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        if name in _REGISTERING:
            importlib.import_module("trajvlm.modeling")
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trajvlm' has no attribute {name!r}")
