"""Moved to ``trajtok.io.video``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.io import video as _moved

warnings.warn("trajtok.video moved to trajtok.io.video", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
