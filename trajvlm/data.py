"""Deprecated: ``trajvlm.data`` moved to ``trajvlm.training.data``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import data as _moved

warnings.warn("trajvlm.data moved to trajvlm.training.data", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
