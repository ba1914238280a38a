"""Deprecated: the ``trajvit`` connector lives in :mod:`trajvlm.connectors.trajvit`; this name keeps old imports working."""

import sys
import warnings

from trajvlm.connectors import trajvit as _m

warnings.warn(
    "trajvlm.trajvit_connector is deprecated; import trajvlm.connectors.trajvit instead",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _m
