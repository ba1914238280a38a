"""Entry point of the lmms-eval model ``trajvlm`` (``[project.entry-points."lmms_eval.models"]``).

lmms-eval reads this manifest while it builds its model registry, so the module imports nothing but the manifest
class; the model itself (``trajvlm.integrations.lmms_eval.TrajVLMLmms``) is imported only when ``--model trajvlm``
is chosen.
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(model_id="trajvlm", simple_class_path="trajvlm.integrations.lmms_eval.TrajVLMLmms")

__all__ = ["MANIFEST"]
