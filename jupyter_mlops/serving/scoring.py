"""Metrics recomputed from a model's predictions, and which way each one is better.

Monitoring recomputes the metrics a run recorded on new labelled rows; promotion compares
two runs metric by metric, each in its direction. Both need to know a metric by its name
when the notebook's checks do not say: this module is where that knowledge lives.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["KNOWN_METRICS", "metric_direction", "metric_value"]

_CLASSIFICATION = ("accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc",
                   "log_loss")
_REGRESSION = ("r2", "mae", "mse", "rmse")
#: The metrics jupyter-mlops can recompute from predictions, by name.
KNOWN_METRICS = _CLASSIFICATION + _REGRESSION

# Names are matched as words of a snake_case or camelCase name (`val_f1`, `test_accuracy`).
_HIGHER = re.compile(r"(^|_)(accuracy|acc|f1|f1_score|auc|roc_auc|pr_auc|r2|precision|"
                     r"recall|balanced_accuracy|average_precision|ap|map|ndcg|kappa|mcc|"
                     r"jaccard|iou|dice|score|explained_variance|top_\d+_accuracy)($|_)")
_LOWER = re.compile(r"(^|_)(error|err|loss|log_loss|mse|mae|rmse|mape|smape|msle|rmsle|"
                    r"deviance|brier|brier_score|hinge|perplexity|latency|cost|wer|cer)($|_)")


def _words(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower().replace("-", "_")


def metric_direction(name: str, rule: Any = None) -> str | None:
    """``"higher"`` or ``"lower"``: which way metric ``name`` is better, from its check's
    ``rule`` (its ``direction``, else a ``min`` or ``max``), else from its name; None when
    neither tells.

    A ``neg_`` prefix (scikit-learn's negated errors, ``neg_mean_squared_error``) is
    higher-is-better. A name matching both lists (``loss_score``) is unknown.
    """
    if isinstance(rule, dict):
        if rule.get("direction") in ("higher", "lower"):
            return str(rule["direction"])
        if "min" in rule and "max" not in rule:
            return "higher"
        if "max" in rule and "min" not in rule:
            return "lower"
    words = _words(name)
    if words.startswith("neg_"):
        return "higher"
    higher, lower = bool(_HIGHER.search(words)), bool(_LOWER.search(words))
    if higher != lower:
        return "higher" if higher else "lower"
    return None


def metric_value(name: str, y_true: Any, model: Any, frame: Any) -> float | None:
    """Metric ``name`` of ``model`` on ``frame`` against ``y_true``, for the metric names
    jupyter-mlops knows; None for others."""
    from sklearn import metrics

    key = name.lower()
    if key not in _CLASSIFICATION + _REGRESSION:
        return None
    if key in ("roc_auc", "log_loss"):
        if not hasattr(model, "predict_proba"):
            return None
        proba = model.predict_proba(frame)
        if key == "log_loss":
            return float(metrics.log_loss(y_true, proba, labels=model.classes_))
        if proba.shape[1] != 2 or len(set(y_true.tolist())) < 2:
            return None
        return float(metrics.roc_auc_score(y_true, proba[:, 1]))
    predicted = model.predict(frame)
    if key in ("f1", "precision", "recall"):
        average = "binary" if len(getattr(model, "classes_", [])) == 2 else "macro"
        scorer = {"f1": metrics.f1_score, "precision": metrics.precision_score,
                  "recall": metrics.recall_score}[key]
        return float(scorer(y_true, predicted, average=average, zero_division=0))
    simple = {"accuracy": metrics.accuracy_score,
              "balanced_accuracy": metrics.balanced_accuracy_score, "r2": metrics.r2_score,
              "mae": metrics.mean_absolute_error, "mse": metrics.mean_squared_error}
    if key == "rmse":
        return math.sqrt(float(metrics.mean_squared_error(y_true, predicted)))
    return float(simple[key](y_true, predicted))
