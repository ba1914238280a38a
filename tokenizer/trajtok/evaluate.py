"""Moved to ``trajtok.training.evaluate``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.training import evaluate as _moved

warnings.warn("trajtok.evaluate moved to trajtok.training.evaluate", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
