"""What the sidebar shows that no other face prints: captured values and the run history."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .jobs import LabJobs


def captured_summary(notebook: Path) -> dict[str, Any]:
    """What the notebook's kernel captured (``<stem>.mlops.json``), small enough for a panel."""
    from ..notebook.captures import read_record

    record = read_record(notebook)
    data = {}
    for key, entry in record.get("data", {}).items():
        profile = entry.get("profile", {})
        data[key] = {"variable": entry.get("variable", key), "rows": profile.get("rows"),
                     "columns": len(profile.get("columns", {}))}
    models = {name: {"class": str(entry.get("class", "")).rsplit(".", 1)[-1],
                     "fitted": entry.get("fitted")}
              for name, entry in record.get("models", {}).items()}
    metrics = {name: {"value": entry.get("value"), "min": entry.get("min"),
                      "max": entry.get("max")}
               for name, entry in record.get("metrics", {}).items()}
    params = {name: entry.get("value") for name, entry in record.get("params", {}).items()}
    return {"params": params, "data": data, "models": models, "metrics": metrics}


def run_history(pipeline: Path, jobs: LabJobs, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs of ``pipeline``: status, duration, metrics, who started them."""
    from ..run.store import RunStore, default_store

    path = default_store(pipeline)
    if not path.is_file():
        return []
    store = RunStore(path)
    try:
        runs = store.runs(limit)
    finally:
        store.close()
    history = []
    for run in runs:
        status = run.status
        job = jobs.jobs.get(run.run_id)
        if job is not None and not job.running and status == "running":
            status = "cancelled" if job.cancelled else "failed"
        elif job is not None and job.cancelled and status == "failed":
            status = "cancelled"
        history.append({
            "run_id": run.run_id, "status": status, "started": run.started,
            "ended": run.ended, "duration": run.duration, "metrics": run.metrics,
            "parameters": run.parameters, "started_by": run.started_by, "error": run.error,
        })
    return history
