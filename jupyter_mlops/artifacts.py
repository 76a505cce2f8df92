"""``jupyter_mlops.artifacts``, kept for step notebooks and tests exported before the
subpackages: the same module as :mod:`jupyter_mlops.runtime.artifacts`, which new exports import."""

import sys

from .runtime import artifacts as _module

sys.modules[__name__] = _module
