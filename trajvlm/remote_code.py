"""Deprecated: ``trajvlm.remote_code`` moved to ``trajvlm.training.remote_code``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.training import remote_code as _moved

warnings.warn("trajvlm.remote_code moved to trajvlm.training.remote_code", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
