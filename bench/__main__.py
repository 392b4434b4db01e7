"""``python -m bench``: the comparison table (see bench/command.py, or ``python -m bench --help``)."""

import sys

from .command import main

sys.exit(main())
