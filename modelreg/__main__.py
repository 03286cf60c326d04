"""``python -m modelreg``: the same as the ``modelreg`` command."""

import sys

from .cli import main

sys.exit(main())
