"""Moved to ``trajtok.io.weights``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.io import weights as _moved

warnings.warn("trajtok.weights moved to trajtok.io.weights", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
