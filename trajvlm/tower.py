"""Deprecated: ``trajvlm.tower`` moved to ``trajvlm.training.tower``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import tower as _moved

warnings.warn("trajvlm.tower moved to trajvlm.training.tower", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
