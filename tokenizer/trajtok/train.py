"""Moved to ``trajtok.training.train``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.training import train as _moved

warnings.warn("trajtok.train moved to trajtok.training.train", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
