"""Moved to ``trajtok.cli.tokenize``; this alias keeps the old import path working for one release."""

import sys
import warnings

from trajtok.cli import tokenize as _moved

warnings.warn("trajtok.tokenize moved to trajtok.cli.tokenize", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
