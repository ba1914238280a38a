"""Deprecated: the ``tome`` connector lives in :mod:`trajvlm.connectors.tome`; this name keeps old imports working."""

import sys
import warnings

from trajvlm.connectors import tome as _m

warnings.warn("trajvlm.tome is deprecated; import trajvlm.connectors.tome instead", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _m
