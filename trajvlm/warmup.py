"""Deprecated: ``trajvlm.warmup`` moved to ``trajvlm.training.warmup``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import warmup as _moved

warnings.warn("trajvlm.warmup moved to trajvlm.training.warmup", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
