"""``jupyter_mlops.remote``, kept for Airflow DAGs exported before the subpackages: the same
module as :mod:`jupyter_mlops.runtime.remote`, which new exports import."""

import sys

from .runtime import remote as _module

sys.modules[__name__] = _module
