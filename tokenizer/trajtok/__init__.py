"""TrajTok: trajectory tokens for video.

A small learned segmenter groups the pixels of a clip, over space and time at once, into object trajectories;
each trajectory becomes one (or a few) tokens. See ``trajtok.core.modeling`` for the model and the project README.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TrajTok": "trajtok.core.modeling",
    "TrajectoryTokens": "trajtok.core.modeling",
    "TrajTokConfig": "trajtok.core.configuration",
    "load_video": "trajtok.io.video",
    "VideoDecodeError": "trajtok.io.video",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy so that `import trajtok` stays cheap for the CLI and for tools that only need video I/O.
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'trajtok' has no attribute {name!r}")
