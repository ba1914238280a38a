"""Deprecated: ``trajvlm.serve.cli`` moved to ``trajvlm.cli.serve``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.cli import serve as _moved

warnings.warn("trajvlm.serve.cli moved to trajvlm.cli.serve", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
