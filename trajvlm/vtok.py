"""Deprecated: the ``vtok`` connector lives in :mod:`trajvlm.connectors.vtok`; this name keeps old imports working."""

import sys
import warnings

from trajvlm.connectors import vtok as _m

warnings.warn("trajvlm.vtok is deprecated; import trajvlm.connectors.vtok instead", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _m
