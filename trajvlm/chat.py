"""Deprecated: ``trajvlm.chat`` moved to ``trajvlm.cli.chat``; this alias goes in the next release."""

import sys
import warnings

from trajvlm.cli import chat as _moved

warnings.warn("trajvlm.chat moved to trajvlm.cli.chat", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
