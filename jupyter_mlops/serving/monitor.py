"""``jupyter mlops monitor``: new data against the served run, as drift and as metrics.

The reference is the run in service (the promoted one, else the latest that succeeded): the
profile of whichever of its data frames shares the most columns with the new data, tested
column by column with ``drift_report``. With labels, the served model predicts the new rows
and the metrics the notebook recorded are computed again and held to their thresholds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..pipeline.spec import PipelineSpec
from ..run.records import RunRecord
from .importance import drifted_importance, model_importance
from .model import RunModel, load_run_model, open_store
from .reference import choose_reference
from .retrain import RetrainPolicy, read_policy
from .scoring import KNOWN_METRICS, metric_value

EXIT_UNHEALTHY = 3
"""The exit status of ``monitor`` when data drifted or a metric crossed its threshold."""

def read_table(path: str | Path) -> Any:
    """A CSV, Parquet or JSON-lines file as a DataFrame; MlopsError naming the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise MlopsError(f"no data file {path}; give --data a CSV, Parquet or JSON-lines file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".jsonl", ".ndjson", ".json"):
            frame = pd.read_json(path, lines=suffix != ".json")
        else:
            frame = pd.read_csv(path)
    except Exception as err:  # pandas' parsers raise many types; all mean "not readable"
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise MlopsError(f"cannot read {path} as a table ({reason}); give a CSV, Parquet or "
                         "JSON-lines file") from None
    if len(frame) == 0:
        raise MlopsError(f"{path} has no rows; there is nothing to monitor")
    return frame


def _served_model(store: Any, run: RunRecord) -> RunModel | None:
    """The run's model, or None when it cannot be loaded (drift is still checked)."""
    try:
        return load_run_model(store, run.run_id)
    except MlopsError:
        return None


def _metrics(store: Any, run: RunRecord, frame: Any, labels: str,
             thresholds: dict[str, Any], prepare: Any) -> tuple[list[dict[str, Any]], str]:
    """Each recorded metric computed again on the new rows, with its threshold, and which
    rows they were: raw rows go through the pipeline's preparation first (``prepare``)."""
    if labels not in frame.columns:
        raise MlopsError(f"--labels {labels}: the new data has no column `{labels}`; its "
                         f"columns are {', '.join(map(str, frame.columns[:20]))}")
    served = load_run_model(store, run.run_id)
    names = [c["name"] for c in served.columns]
    note = "the new rows as given"
    missing = [n for n in names if n not in frame.columns]
    if missing:
        try:
            frame, note = prepare(names)
        except MlopsError as err:
            raise MlopsError(f"the new data lacks the model's input columns "
                             f"{', '.join(missing)}, and {err}") from None
    known = frame[frame[labels].notna()]
    if len(known) == 0:
        raise MlopsError(f"column `{labels}` of the new data has no values")
    results = []
    for name in run.metrics:
        rule = thresholds.get(name, {})
        entry: dict[str, Any] = {"name": name, "run_value": run.metrics[name],
                                 "min": rule.get("min"), "max": rule.get("max")}
        try:
            value = metric_value(name, known[labels], served.model, known[names])
        except (ValueError, TypeError) as err:
            entry.update(value=None, ok=None, note=f"not computed: {err}")
            results.append(entry)
            continue
        if value is None:
            entry.update(value=None, ok=None, note="not computed: jupyter-mlops recomputes "
                         + ", ".join(KNOWN_METRICS))
        else:
            low, high = entry["min"], entry["max"]
            entry.update(value=value, ok=(low is None or value >= low)
                         and (high is None or value <= high))
        results.append(entry)
    return results, note


def _model_stage(pipeline_dir: str | Path, run: RunRecord, served: RunModel, frame: Any,
                 policy: RetrainPolicy) -> dict[str, Any] | None:
    """Raw new rows through the prepare cells: the prepared frame and its drift against the
    model's training input; None when the rows are not raw (they lack what preparing needs)."""
    from ..runtime.drift import drift_report
    from .preparation import load_preparation

    preparation = load_preparation(pipeline_dir, run, served.features)
    if preparation is None or any(c not in frame.columns for c in preparation.required):
        return None
    prepared, dropped = preparation.apply(frame)
    cells = ", ".join(str(c["cell"]) for c in preparation.plan.cells)
    note = (f"the new rows prepared by the prepare cells ({cells})"
            + (f", which dropped {len(dropped)}" if dropped else ""))
    drift = drift_report(served.profile, prepared[served.features],
                         threshold_share=policy.drift_share)
    return {"frame": prepared, "note": note, "drift": drift, "rows": len(prepared),
            "dropped": len(dropped)}


def _reasons(drift: dict[str, Any], staged: dict[str, Any] | None, weighted: dict[str, Any],
             metrics: list[dict[str, Any]], policy: RetrainPolicy) -> list[str]:
    """Why the new data is unhealthy, each with its figures (empty: it is healthy)."""
    reasons: list[str] = []
    if drift["dataset_drift"]:
        reasons.append(f"{len(drift['drifted'])} of {len(drift['columns'])} columns drifted "
                       f"({', '.join(drift['drifted'])}), at or above the share "
                       f"{policy.drift_share:g}")
    if staged is not None and staged["drift"]["dataset_drift"]:
        model_drift = staged["drift"]
        reasons.append(f"{len(model_drift['drifted'])} of {len(model_drift['columns'])} of the "
                       f"model's input columns drifted after preparation "
                       f"({', '.join(model_drift['drifted'])})")
    if weighted["share"] is not None and weighted["share"] >= policy.drift_importance:
        top = ", ".join(f"{c} {v:.2f}" for c, v in weighted["columns"].items())
        reasons.append(f"{weighted['share']:.2f} of the model's importance is on drifted "
                       f"columns ({top}), at or above {policy.drift_importance:g}")
    for entry in metrics:
        if entry["ok"] is False:
            line = entry["min"] if entry["min"] is not None and entry["value"] < entry[
                "min"] else entry["max"]
            reasons.append(f"metric `{entry['name']}` is {entry['value']:.4g} on the new data, "
                           f"beyond its threshold {line:.4g} (the run had "
                           f"{entry['run_value']:.4g})")
    return reasons


def monitor(pipeline_dir: str | Path, data: str | Path, *, labels: str | None = None,
            store: str | Path | None = None, policy: RetrainPolicy | None = None,
            frame: Any = None, stage: str | None = None) -> dict[str, Any]:
    """The monitoring report of ``data`` (or of ``frame``, already read from it) against
    the served run of ``pipeline_dir``.

    The new data is compared with the run's frame most like it (:mod:`.reference`; among
    step ``stage``'s frames when given). ``healthy`` is False when the share of drifted
    columns reaches the policy's ``drift_share``, the share of the model's importance on
    drifted columns reaches ``drift_importance`` (:mod:`.importance`), or a recomputed metric
    is beyond its threshold; ``reasons`` says which, with the figures.
    """
    from ..runtime.drift import check_schema, drift_report

    spec = PipelineSpec.read(pipeline_dir)
    policy = policy or read_policy(pipeline_dir)
    frame = read_table(data) if frame is None else frame
    frame.columns = [str(c) for c in frame.columns]
    run_store = open_store(pipeline_dir, store)
    try:
        run_id = run_store.served_run(spec.name)
        if run_id is None:
            raise MlopsError(f"pipeline `{spec.name}` has no succeeded run to compare with; "
                             f"run it first with `jupyter mlops run {pipeline_dir}`")
        run = run_store.run(run_id)
        served = _served_model(run_store, run)
        reference = choose_reference(run, list(frame.columns), stage=stage, features=[
            c["name"] for c in served.columns] if served else None)
        profile = reference.profile
        shared = [c["name"] for c in profile["columns"] if c["name"] in frame.columns]
        subset = frame[shared]
        problems = [p for p in check_schema(profile, subset) if "is missing" not in p]
        drift = drift_report(profile, subset, threshold_share=policy.drift_share)
        weighted = drifted_importance(model_importance(run, served), drift["drifted"],
                                      list(drift["columns"])) if served else {
            "share": None, "why": "the run's model could not be loaded"}
        thresholds = {**spec.checks.get("metrics", {}), **policy.metrics}
        staged = _model_stage(pipeline_dir, run, served, frame, policy) \
            if spec.inference is not None and served is not None else None

        def prepare(features: list[str]) -> tuple[Any, str]:
            if staged is not None:
                return staged["frame"], staged["note"]
            from .prepare import prepared_frame
            from .retrain import data_parameter

            return prepared_frame(pipeline_dir, run, features, data, str(labels),
                                  data_parameter(spec, pipeline_dir, policy))

        metrics, scored_on = _metrics(run_store, run, frame, labels, thresholds,
                                      prepare) if labels else ([], "")
    finally:
        run_store.close()
    reasons = _reasons(drift, staged, weighted, metrics, policy)
    return {
        "pipeline": spec.name, "run_id": run.run_id, "data": str(Path(data).resolve()),
        "rows": len(frame), "checked": time.time(),
        "reference": {"step": reference.step, "variable": reference.variable,
                      "rows": profile.get("rows"), "stage": reference.stage,
                      "why": reference.why},
        "importance": weighted,
        "missing": [c["name"] for c in profile["columns"] if c["name"] not in frame.columns],
        "new_columns": [c for c in frame.columns
                        if c not in {col["name"] for col in profile["columns"]}],
        "schema": problems, "drift": drift, "metrics": metrics, "labels": labels,
        "metrics_on": scored_on,
        "healthy": not reasons, "reasons": reasons, "profile": profile,
        # the second stage: the new rows as the model sees them, after the prepare cells
        "model_input": None if staged is None else {
            "drift": staged["drift"], "rows": staged["rows"], "dropped": staged["dropped"],
            "note": staged["note"]},
    }


def summary(report: dict[str, Any]) -> str:
    """The report in a few lines for the terminal."""
    drift = report["drift"]
    ref = report["reference"]
    lines = [f"Monitored {report['rows']:,} rows of {report['data']} against run "
             f"{report['run_id']} (`{ref['variable']}` of step {ref['step']}): "
             + ("healthy" if report["healthy"] else "UNHEALTHY"),
             f"  compared with: {ref.get('stage', 'frame')} `{ref['variable']}` of step "
             f"{ref['step']} ({ref.get('why', '')})",
             f"  drift: {len(drift['drifted'])} of {len(drift['columns'])} columns "
             f"(share {drift['share']:.2f})"
             + (f": {', '.join(drift['drifted'])}" if drift["drifted"] else "")]
    staged = report.get("model_input")
    if staged:
        second = staged["drift"]
        lines.append(f"  model input drift: {len(second['drifted'])} of "
                     f"{len(second['columns'])} columns (share {second['share']:.2f})"
                     + (f": {', '.join(second['drifted'])}" if second["drifted"] else "")
                     + f", on {staged['note']}")
    weighted = report.get("importance") or {}
    if weighted.get("share") is not None:
        lines.append(f"  importance on drifted columns: {weighted['share']:.2f} of the model's "
                     f"({weighted.get('method')})")
    elif weighted:
        lines.append(f"  importance on drifted columns: not computed ({weighted.get('why')})")
    if report.get("metrics_on"):
        lines.append(f"  metrics on: {report['metrics_on']}")
    for entry in report["metrics"]:
        if entry["value"] is None:
            lines.append(f"  {entry['name']}: {entry['note']}")
        else:
            mark = "ok" if entry["ok"] else "BEYOND THRESHOLD"
            lines.append(f"  {entry['name']} = {entry['value']:.4g} (run {entry['run_value']:.4g}"
                         f", min {entry['min']}, max {entry['max']}): {mark}")
    lines += [f"  schema: {p}" for p in report["schema"]]
    return "\n".join(lines)


def write_report(report: dict[str, Any], folder: str | Path, frame: Any) -> list[Path]:
    """``monitor.json`` and ``monitor.html`` (a plot per column) in ``folder``, atomically."""
    import json

    from ..runtime._files import atomic_write
    from .monitorhtml import render_html

    folder = Path(folder)
    data = {k: v for k, v in report.items() if k != "profile"}
    paths = [folder / "monitor.json", folder / "monitor.html"]
    try:
        atomic_write(paths[0], json.dumps(data, indent=1, allow_nan=False, default=str) + "\n")
        atomic_write(paths[1], render_html(report, frame))
    except OSError as err:
        raise MlopsError(f"cannot write the report into {folder} ({err.strerror}); choose "
                         "another --report folder") from None
    return paths
