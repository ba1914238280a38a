"""``trajvlm serve``: an OpenAI-compatible chat server for video, with a web page at ``/``.

    trajvlm serve --model runs/demo/vlm-trajtok --media-root runs/demo/data/test        # http://127.0.0.1:8000/

- :mod:`trajvlm.serve.app`: the FastAPI application (``POST /v1/chat/completions``, ``GET /v1/models``,
  ``GET /health``, ``POST /v1/trajectory_overlay``, ``GET /v1/media``, the page).
- :mod:`trajvlm.serve.engine`: the queue and the worker that batches requests through ``generate_batch``.
- :mod:`trajvlm.serve.media`: video URLs (``file://`` under the media root, ``data:`` uploads and frames) -> frames.
- :mod:`trajvlm.serve.schemas`: request validation and the OpenAI response / stream chunk bodies.
- :mod:`trajvlm.serve.server`: uvicorn with read timeouts for slow clients, a lingering close after an early 413, and a
  shutdown that stops running generations first.

Limits, security rules and what a hostile request may cost: docs/serving.md.
"""

from __future__ import annotations

from trajvlm.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]


def __getattr__(name: str):
    if name == "create_app":  # keeps `import trajvlm.serve` free of FastAPI until the app is wanted
        from trajvlm.serve.app import create_app

        return create_app
    raise AttributeError(name)
