"""Moved to ``trajtok.io.release``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.io import release as _moved

warnings.warn("trajtok.release moved to trajtok.io.release", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
