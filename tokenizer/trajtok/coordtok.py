"""Moved to ``trajtok.baselines.coordtok``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.baselines import coordtok as _moved

warnings.warn("trajtok.coordtok moved to trajtok.baselines.coordtok", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
