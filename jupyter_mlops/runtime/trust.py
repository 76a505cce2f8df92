"""Which types a ``.skops`` model file may bring to life when it is loaded.

skops refuses any type that is not on its own short list unless the caller trusts it. The
list jupyter-mlops passes comes from here, never from a file beside the artifact: whoever can
write an artifacts folder can write a manifest too, so a manifest that said ``os.system`` was
trusted would run code. What is trusted:

- classes defined in scikit-learn (estimators and their parts: trees, splitters, scorers),
  outside its test helpers;
- numpy ufuncs (``numpy.log1p``), numpy scalar types and dtypes, scipy sparse matrices:
  computation only, no file or process access;
- functions defined in ``sklearn.metrics`` (the scorers a search keeps);
- the exact type names the author trusts at export (``jupyter mlops export --trust NAME``),
  written into ``pipeline.yaml``.

Not trusted even inside those packages: any other function (``numpy.load`` reads pickles,
``sklearn.datasets.dump_svmlight_file`` writes files) and any object whose defining module is
not the package it was named under (a re-export of ``os.system`` stays ``os.system``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["TYPE_NAME", "check_type_names", "is_trusted", "refused"]

#: A dotted Python name: what ``--trust`` accepts.
TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_PACKAGES = ("sklearn", "numpy", "scipy")
_EXCLUDED = re.compile(r"(^|\.)(tests?|_testing|conftest)(\.|$)")


def _resolve(name: str) -> Any:
    """The object ``name`` names, importing only modules of the trusted packages; None when
    it cannot be found."""
    module_name, _, attribute = name.rpartition(".")
    parts = module_name.split(".")
    if parts[0] not in _PACKAGES or _EXCLUDED.search(module_name) or "__main__" in parts:
        return None  # a package's __main__ runs its command line when imported
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit):  # a name that does not import is simply not trusted
        return None
    return getattr(module, attribute, None)


def _defined_in(obj: Any, package: str) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return (module == package or module.startswith(package + ".")) and \
        not _EXCLUDED.search(module)


def _builtin_trust(name: str) -> bool:
    obj = _resolve(name)
    if obj is None:
        return False
    import numpy as np

    if isinstance(obj, np.ufunc):
        return True
    if isinstance(obj, type):
        if _defined_in(obj, "sklearn"):
            return True
        if issubclass(obj, (np.generic, np.dtype)):
            return True
        if _defined_in(obj, "scipy.sparse"):
            import scipy.sparse

            bases = tuple(b for b in (getattr(scipy.sparse, "spmatrix", None),
                                      getattr(scipy.sparse, "sparray", None)) if b)
            return bool(bases) and issubclass(obj, bases)
        return False
    return callable(obj) and _defined_in(obj, "sklearn.metrics")


def is_trusted(name: str, extra: Iterable[str] = ()) -> bool:
    """True when a model file may instantiate type (or function) ``name``."""
    return name in set(extra) or _builtin_trust(name)


def refused(names: Iterable[str], extra: Iterable[str] = ()) -> list[str]:
    """The names among ``names`` that are not trusted, sorted."""
    extra = list(extra)
    return sorted({n for n in names if not is_trusted(n, extra)})


def check_type_names(names: Iterable[Any], where: str) -> list[str]:
    """``names`` as a list of dotted type names; ValueError (its message starting with
    ``where``) otherwise."""
    if isinstance(names, (str, bytes)) or not isinstance(names, Iterable):
        raise ValueError(f"{where} must be a list of type names such as xgboost.XGBClassifier")
    checked = []
    for name in names:
        if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
            raise ValueError(f"{where}{name!r:.80} is not a dotted type name such as "
                             "xgboost.XGBClassifier")
        checked.append(name)
    return checked
