"""``python -m trajvlm.cli COMMAND ...``: the same as the ``trajvlm`` console command."""

import sys

from trajvlm.cli import main

sys.exit(main())
