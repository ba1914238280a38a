"""Moved to ``trajtok.io.writer``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.io import writer as _moved

warnings.warn("trajtok.videowriter moved to trajtok.io.writer", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
