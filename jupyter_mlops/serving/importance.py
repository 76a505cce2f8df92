"""How much the served model relies on each input column, to weigh drift by it.

Counting drifted columns misses drift where the model looks: two columns of fourteen can
carry most of a model's decisions. So each run's model gets one importance per input column,
as shares summing to 1:

- the model's own ``feature_importances_`` when it is a bare estimator that has them (one
  per input column);
- otherwise permutation importance (scikit-learn's ``permutation_importance``, 5 repeats,
  seed 0, the model's own ``score``) on the run's held-out rows (``X_test``/``y_test``),
  negative means counted as 0.

It is computed once per run and model and kept in ``RUN/profiles/`` (named by the model
file's hash), like the data profiles.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..run.records import RunRecord
from ..runtime._files import atomic_write
from .model import PROFILES_DIR, RunModel, model_outputs
from .retrain import evaluation_split

__all__ = ["drifted_importance", "model_importance"]


def _compute(run: RunRecord, model: RunModel) -> dict[str, Any]:
    features = [c["name"] for c in model.columns]
    own = getattr(model.model, "feature_importances_", None)
    if own is not None and not hasattr(model.model, "steps") and len(own) == len(features):
        values = [max(float(v), 0.0) for v in own]
        method = "the model's own feature_importances_"
    else:
        split = evaluation_split(run, features)
        if split is None:
            return {"method": None, "why": "the run saved no held-out frame (such as X_test "
                    "with y_test) to compute permutation importance on"}
        from sklearn.inspection import permutation_importance

        X, y, which = split
        try:
            result = permutation_importance(model.model, X[features], y, n_repeats=5,
                                            random_state=0)
        except (ValueError, TypeError, KeyError) as err:  # the model cannot score those rows
            return {"method": None, "why": f"permutation importance on {which} failed: "
                    f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"}
        values = [max(float(v), 0.0) for v in result.importances_mean]
        method = f"permutation importance on {which} ({len(X):,} rows, 5 repeats)"
    total = sum(values)
    if total <= 0:
        return {"method": method, "why": "no column changes the model's score when shuffled"}
    return {"method": method, "columns": {f: v / total for f, v in zip(features, values,
                                                                        strict=True)}}


def model_importance(run: RunRecord, model: RunModel) -> dict[str, Any]:
    """``{"method", "columns": {column: share}}``, or ``{"method", "why"}`` when it cannot be
    computed; cached in the run's folder."""
    sha = next((m["sha256"] for step, name, m in model_outputs(run)
                if step == model.step and name == model.name), "")
    cache = Path(run.folder) / PROFILES_DIR / f"importance.{model.name}.{sha[:16]}.json"
    try:
        return dict(json.loads(cache.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    found = _compute(run, model)
    try:
        atomic_write(cache, json.dumps(found, allow_nan=False))
    except (OSError, ValueError):
        pass  # a read-only run folder: compute again next time
    return found


def drifted_importance(importance: dict[str, Any], drifted: list[str],
                       checked: list[str]) -> dict[str, Any]:
    """The share of the model's importance on drifted columns, among the columns the drift
    test looked at: ``{"share", "columns", "method"}``, or ``{"share": None, "why"}``."""
    shares = importance.get("columns")
    if not shares:
        return {"share": None, "why": importance.get("why", "not computed")}
    seen = [c for c in shares if c in set(checked)]
    if not seen:
        return {"share": None, "why": "the compared frame holds none of the model's input "
                "columns (compare model-input rows, or use --stage)"}
    hit = {c: shares[c] for c in seen if c in set(drifted)}
    return {"share": sum(hit.values()), "columns": dict(sorted(hit.items(),
                                                               key=lambda kv: -kv[1])),
            "method": importance.get("method"),
            "covered": sum(shares[c] for c in seen)}
