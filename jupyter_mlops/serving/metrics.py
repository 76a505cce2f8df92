"""What ``GET /metrics`` tells Prometheus: traffic, errors, latency, predictions, and drift.

One registry per server (not prometheus_client's global one), so tests and embedding
applications never see each other's counters. Drift is computed at scrape time over a
sliding window of the latest input rows, with the same ``drift_report`` as pipeline runs,
and only when rows arrived since the last scrape.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .model import RunModel

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)
ENDPOINTS = ("/predict", "/health", "/metrics")
MIN_WINDOW = 30
"""Fewer recent rows than this give no drift scores: the tests would say little."""
MAX_KEPT_TEXT = 64
"""Longer text in the drift window is kept as a short digest: the tests compare categories,
and one client's megabyte strings must not stay in memory (a window is bounded in bytes)."""


def kept(value: Any) -> Any:
    """What the drift window keeps of one input value: numbers and short text as they are;
    long text, or text that is not valid Unicode (a lone surrogate), as a digest that counts
    as one unknown category."""
    if not isinstance(value, str):
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if len(value) <= MAX_KEPT_TEXT:
            return value
    import hashlib

    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"<text sha256:{digest}>"


class ServeMetrics:
    """Prometheus collectors of one server, and the window of recent inputs."""

    def __init__(self, model: RunModel, window: int = 1000) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("mlops_requests", "HTTP requests, by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.errors = Counter("mlops_request_errors", "Requests answered with a 4xx or 5xx "
                              "status, by endpoint and status", ["endpoint", "status"],
                              registry=self.registry)
        self.latency = Histogram("mlops_request_latency_seconds", "Time to answer a request",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.rows = Counter("mlops_predicted_rows", "Rows predicted", registry=self.registry)
        self.classes = Counter("mlops_predictions", "Predicted rows, by predicted class",
                               ["label"], registry=self.registry)
        self.values = Histogram("mlops_prediction_value", "Predicted values of a regressor",
                                buckets=_value_buckets(model), registry=self.registry)
        self.drift_score = Gauge("mlops_feature_drift_score", "Drift score of each input "
                                 "column over the recent window against the training "
                                 "profile (p-value for ks/chi2/z, distance otherwise)",
                                 ["feature", "method"], registry=self.registry)
        self.drifted = Gauge("mlops_feature_drift", "1 when the column drifted, else 0",
                             ["feature"], registry=self.registry)
        self.psi = Gauge("mlops_feature_psi", "Population stability index of each input "
                         "column over the recent window", ["feature"], registry=self.registry)
        self.drift_share = Gauge("mlops_drift_share", "Share of the input columns that "
                                 "drifted", registry=self.registry)
        self.window_rows = Gauge("mlops_drift_window_rows", "Rows in the drift window",
                                 registry=self.registry)
        self.model_info = Gauge("mlops_model_info", "The served model (value 1)",
                                ["run_id", "model"], registry=self.registry)
        self.switches = Counter("mlops_model_switches", "Times the served run changed",
                                registry=self.registry)
        self.window: deque[tuple[Any, ...]] = deque(maxlen=window)
        self.lock = threading.Lock()
        self.model = model
        self._fresh = False
        self.model_info.labels(model.run_id, model.name).set(1)

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        endpoint = endpoint if endpoint in ENDPOINTS else "other"
        self.requests.labels(endpoint, str(status)).inc()
        if status >= 400:
            self.errors.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def predicted(self, records: list[dict[str, Any]], predictions: Any) -> None:
        """Count the predictions and keep the inputs (checked records) for the drift window."""
        self.rows.inc(len(records))
        if self.model.classes is not None:
            labels, counts = _counts(predictions)
            for label, count in zip(labels, counts, strict=True):
                self.classes.labels(label).inc(count)
        else:
            for value in predictions.tolist():
                self.values.observe(float(value))
        names = [c["name"] for c in self.model.columns]
        # tuples straight from the records: cheaper than reading the frame back, per request
        rows = [tuple(kept(record[name]) for name in names) for record in records]
        with self.lock:
            self.window.extend(rows)
            self._fresh = True

    def switch(self, model: RunModel) -> None:
        """A new run is served: forget the old run's window and drift figures."""
        with self.lock:
            self.model_info.clear()
            self.model_info.labels(model.run_id, model.name).set(1)
            self.switches.inc()
            self.model = model
            self.window.clear()
            self._fresh = False
            for gauge in (self.drift_score, self.drifted, self.psi):
                gauge.clear()
            self.drift_share.set(0)

    def render(self) -> bytes:
        """The text exposition, drift brought up to date first."""
        from prometheus_client import generate_latest

        self._update_drift()
        return generate_latest(self.registry)

    def _update_drift(self) -> None:
        import pandas as pd

        from ..runtime.drift import drift_report

        with self.lock:
            self.window_rows.set(len(self.window))
            if not self._fresh or len(self.window) < MIN_WINDOW:
                return
            rows, model = list(self.window), self.model
            self._fresh = False
        names = [c["name"] for c in model.columns]
        frame = pd.DataFrame.from_records(rows, columns=names)
        for column in model.columns:
            if column["kind"] == "numeric":  # a column of nulls alone would be objects
                frame[column["name"]] = pd.to_numeric(frame[column["name"]], errors="coerce")
        report = drift_report(model.profile, frame)
        with self.lock:
            if model is not self.model:
                return  # switched meanwhile: these figures are the old run's
            for name, result in report["columns"].items():
                self.drift_score.labels(name, result["method"]).set(result["score"])
                self.drifted.labels(name).set(1 if result["drift"] else 0)
                self.psi.labels(name).set(result["psi"])
            self.drift_share.set(report["share"])


def _counts(predictions: Any) -> tuple[list[str], list[int]]:
    from collections import Counter

    # a Counter, not np.unique: a request holds a few rows, and this is on its path
    counted = Counter(map(str, predictions.tolist()))
    return list(counted), list(counted.values())


def _value_buckets(model: RunModel) -> tuple[float, ...]:
    """Buckets of predicted values: the deciles of the training labels when the run saved
    them, so the histogram compares with what the model learned from."""
    profile = model.target_profile
    column = profile["columns"][0] if profile and profile.get("columns") else {}
    quantiles = column.get("quantiles") if column.get("kind") == "numeric" else None
    if not quantiles:
        return (0.0, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 100.0, 1000.0, float("inf"))
    edges = sorted({float(quantiles[i]) for i in range(0, 101, 10)})
    return (*edges, float("inf"))
