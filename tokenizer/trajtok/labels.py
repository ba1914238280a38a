"""Moved to ``trajtok.io.labels``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.io import labels as _moved

warnings.warn("trajtok.labels moved to trajtok.io.labels", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
