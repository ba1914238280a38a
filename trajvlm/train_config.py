"""Deprecated: ``trajvlm.train_config`` moved to ``trajvlm.training.config``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import config as _moved

warnings.warn("trajvlm.train_config moved to trajvlm.training.config", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
