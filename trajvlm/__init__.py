"""TrajVLM: TrajTok trajectory tokens as the vision connector of LLaVA-OneVision / LLaVA-Video models.

Importing ``trajvlm`` registers the ``trajvlm`` model type with transformers' Auto classes (see
``trajvlm.modeling``); it never imports deepspeed, lmms_eval or wandb.
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
    "build_tiny_base": "trajvlm.base",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trajvlm' has no attribute {name!r}")
