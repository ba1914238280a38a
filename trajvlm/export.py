"""Deprecated: ``trajvlm.export`` moved to ``trajvlm.training.export``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import export as _moved

warnings.warn("trajvlm.export moved to trajvlm.training.export", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
