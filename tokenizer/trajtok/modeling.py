"""Moved to ``trajtok.core.modeling``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.core import modeling as _moved

warnings.warn("trajtok.modeling moved to trajtok.core.modeling", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
