"""``jupyter_mlops.runner``, kept for generated tests exported before the subpackages: the same
module as :mod:`jupyter_mlops.run.runner`, which new exports import."""

import sys

from .run import runner as _module

sys.modules[__name__] = _module
