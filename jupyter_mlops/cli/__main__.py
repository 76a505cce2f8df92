"""``python -m jupyter_mlops.cli``: the same as ``jupyter mlops``."""

import sys

from .app import main

sys.exit(main())
