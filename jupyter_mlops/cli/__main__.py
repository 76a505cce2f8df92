"""``python -m jupyter_mlops.cli``: the same as ``jupyter mlops``."""

from .app import console

console()
