"""Moved to ``trajtok.core.configuration``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.core import configuration as _moved

warnings.warn("trajtok.configuration moved to trajtok.core.configuration", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
