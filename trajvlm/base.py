"""Deprecated: ``trajvlm.base`` moved to ``trajvlm.training.base``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import base as _moved

warnings.warn("trajvlm.base moved to trajvlm.training.base", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
