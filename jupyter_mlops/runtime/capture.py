"""What ``%%mlops params``, ``model`` and ``metrics`` capture from the kernel's namespace.

Each function takes the names to capture and the user's namespace and returns JSON-able
entries for the record; they never change the namespace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ._jsonvalues import json_like

#: Metric names that are better when lower (errors, losses); the rest are better when higher.
_LOWER_IS_BETTER = re.compile(r"(error|loss|mse|mae|rmse|mape|deviance|brier|log_?loss|"
                              r"hinge|perplexity|latency|cost)", re.IGNORECASE)
DEFAULT_TOLERANCE = 0.05


def lower_is_better(name: str) -> bool:
    """True for metrics such as ``rmse`` or ``val_loss``, by their name."""
    return bool(_LOWER_IS_BETTER.search(name))


def capture_metrics(names: Iterable[str], namespace: Mapping[str, Any],
                    minimums: Mapping[str, float] | None = None,
                    maximums: Mapping[str, float] | None = None,
                    tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Each metric's value and the threshold a pipeline run must keep.

    By default the threshold is the captured value less ``tolerance`` (relative) in the
    metric's direction; ``--min``/``--max`` override it per metric.
    """
    minimums, maximums = dict(minimums or {}), dict(maximums or {})
    names = list(names)
    for name in list(minimums) + list(maximums):
        if name not in names:
            raise MlopsError(f"a threshold is set on `{name}`, which is not one of the metrics "
                             f"of this cell ({', '.join(names) or 'none'})")
    found: dict[str, Any] = {}
    for name in names:
        if name not in namespace:
            raise MlopsError(f"metric `{name}` does not exist after this cell ran; check the "
                             "spelling or assign it in the cell")
        value = namespace[name]
        # a numpy scalar, or a 0-d array; not a datetime64 or timedelta64, whose item() is
        # an int (or a date) and no measure
        if (hasattr(value, "item") and getattr(value, "shape", None) == ()
                and getattr(getattr(value, "dtype", None), "kind", "") not in ("m", "M")):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise MlopsError(f"metric `{name}` is {type(value).__name__} {value!r:.60}; a metric "
                             "must be one finite number, e.g. float(accuracy_score(...))")
        lower = lower_is_better(name)
        entry: dict[str, Any] = {"value": float(value),
                                 "direction": "lower" if lower else "higher"}
        margin = abs(float(value)) * tolerance
        if name in minimums or name in maximums:
            if name in minimums:
                entry["min"] = float(minimums[name])
            if name in maximums:
                entry["max"] = float(maximums[name])
        elif lower:
            entry["max"] = float(value) + margin
        else:
            entry["min"] = float(value) - margin
        found[name] = entry
    return found


def _plain(value: Any) -> Any:
    """A hyperparameter as strict JSON: itself when it is, else its repr (NaN included)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v) for k, v in value.items()}
    return value if json_like(value) else repr(value)


def capture_model(name: str, namespace: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The estimator's class, hyperparameters, fitted state and features; saved with skops."""
    from .artifacts import save

    if name not in namespace:
        raise MlopsError(f"model `{name}` does not exist after this cell ran; check the "
                         "spelling or assign it in the cell")
    model = namespace[name]
    if not (hasattr(model, "get_params") and hasattr(model, "fit")):
        raise MlopsError(f"`{name}` is a {type(model).__module__}.{type(model).__name__}, not a "
                         "scikit-learn estimator; mark the variable that holds the model")
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
        fitted = True
    except NotFittedError:
        fitted = False
    entry: dict[str, Any] = {
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "params": {k: _plain(v) for k, v in sorted(model.get_params(deep=True).items())},
        "fitted": fitted,
    }
    features = getattr(model, "feature_names_in_", None)
    if features is not None:
        entry["features_in"] = [str(f) for f in features]
    elif hasattr(model, "n_features_in_"):
        entry["n_features_in"] = int(model.n_features_in_)
    classes = getattr(model, "classes_", None)
    if classes is not None:
        entry["classes"] = [_plain(c.item() if hasattr(c, "item") else c) for c in classes]
    # trusted=None: the author's own model is saved whatever it needs; export then says
    # which of its types must be trusted (--trust) for a pipeline to load it.
    manifest = save(model, name, folder, role="model", trusted=None)
    entry["file"] = f"{folder.name}/{manifest['file']}"
    entry["sha256"] = manifest["sha256"]
    entry["trusted"] = manifest.get("trusted", [])
    return entry
