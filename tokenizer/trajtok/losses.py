"""Moved to ``trajtok.core.losses``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.core import losses as _moved

warnings.warn("trajtok.losses moved to trajtok.core.losses", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
