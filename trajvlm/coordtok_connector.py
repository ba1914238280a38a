"""Deprecated: the ``coordtok`` connector lives in :mod:`trajvlm.connectors.coordtok`; this name keeps old imports working."""

import sys
import warnings

from trajvlm.connectors import coordtok as _m

warnings.warn(
    "trajvlm.coordtok_connector is deprecated; import trajvlm.connectors.coordtok instead",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = _m
