"""Moved to ``trajtok.baselines.coordtok_train``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.baselines import coordtok_train as _moved

warnings.warn("trajtok.coordtok_train moved to trajtok.baselines.coordtok_train", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
