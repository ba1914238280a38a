"""Deprecated: ``trajvlm.train`` moved to ``trajvlm.training.trainer``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import trainer as _moved

warnings.warn("trajvlm.train moved to trajvlm.training.trainer", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
