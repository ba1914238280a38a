"""``python -m trajtok.cli``: the ``trajtok`` command."""

import sys

from trajtok.cli import main

sys.exit(main())
