"""What the sidebar shows that no other face prints: captured values and the run history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from .launches import LabJobs

#: What ``run.json`` must hold for the sidebar to show it: field -> accepted types.
_NUMBER = (int, float, type(None))
_TEXT = (str, type(None))
_RUN_FIELDS: dict[str, tuple[type, ...]] = {
    "status": (str,), "steps": (list,), "run_id": (str,), "error": _TEXT,
    "parameters": (dict, type(None)), "started": _NUMBER, "ended": _NUMBER,
    "duration": _NUMBER}
_STEP_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,), "status": (str,), "notebook": _TEXT, "error": _TEXT, "cell": _NUMBER,
    "started": _NUMBER, "ended": _NUMBER, "duration": _NUMBER, "cell_index": _NUMBER,
    "cell_total": _NUMBER, "cached_from": _TEXT}


class RecordError(MlopsError):
    """A run's record the server cannot show: damaged, or kept outside the server's root."""


def read_run_file(path: Path, shown: str) -> dict[str, Any]:
    """``run.json`` at ``path`` (``shown`` in messages), checked to hold what the sidebar
    reads; :class:`RecordError` when it does not. A missing file raises FileNotFoundError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError, RecursionError) as err:
        problem: str | None = (str(err).splitlines() or [type(err).__name__])[0][:80]
    else:
        problem = _wrong_fields(data)
    if problem:
        raise RecordError(f"{shown} is damaged ({problem}); delete that run's folder, or run "
                          "the pipeline again")
    return data


def _wrong_fields(data: Any) -> str | None:
    """What in a parsed ``run.json`` the sidebar could not show, or None."""
    if not isinstance(data, dict):
        return f"a {type(data).__name__}, not an object"
    missing = [name for name in ("status", "steps") if name not in data]
    if missing:
        return f"no `{missing[0]}`"
    checks = [("", data, _RUN_FIELDS)]
    for i, step in enumerate(data["steps"] if isinstance(data["steps"], list) else []):
        if not isinstance(step, dict):
            return f"`steps[{i}]` is not an object"
        checks.append((f"steps[{i}].", step, _STEP_FIELDS))
    for prefix, fields, kinds in checks:
        for name, accepted in kinds.items():
            value = fields.get(name)
            if name in fields and (not isinstance(value, accepted)
                                   or (isinstance(value, bool) and accepted is _NUMBER)):
                return f"`{prefix}{name}` is {type(value).__name__}"
    return None


def captured_summary(notebook: Path) -> dict[str, Any]:
    """What the notebook's kernel captured (``<stem>.mlops.json``), small enough for a panel;
    entries of a hand-damaged record that are not objects are left out."""
    from ..notebook.captures import read_record

    record = read_record(notebook)
    data = {}
    for key, entry in _entries(record, "data"):
        profile = entry.get("profile")
        profile = profile if isinstance(profile, dict) else {}
        columns = profile.get("columns")
        data[key] = {"variable": entry.get("variable", key), "rows": profile.get("rows"),
                     "columns": len(columns) if isinstance(columns, dict | list) else 0}
    models = {name: {"class": str(entry.get("class", "")).rsplit(".", 1)[-1],
                     "fitted": entry.get("fitted")}
              for name, entry in _entries(record, "models")}
    metrics = {name: {"value": entry.get("value"), "min": entry.get("min"),
                      "max": entry.get("max")}
               for name, entry in _entries(record, "metrics")}
    params = {name: entry.get("value") for name, entry in _entries(record, "params")}
    return {"params": params, "data": data, "models": models, "metrics": metrics}


def _entries(record: dict[str, Any], section: str) -> list[tuple[str, dict[str, Any]]]:
    """The well-formed entries of one section of a capture record."""
    entries = record.get(section)
    if not isinstance(entries, dict):
        return []
    return [(str(name), entry) for name, entry in entries.items() if isinstance(entry, dict)]


def run_history(pipeline: Path, jobs: LabJobs, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs of ``pipeline``: status, duration, metrics, who started them.

    A run whose runner is gone reads ``interrupted``, its error saying why and how to resume
    it (the store decides, :func:`~jupyter_mlops.run.store.runner_gone`); one this server
    cancelled reads ``cancelled`` while its end is being recorded."""
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
        status, error = run.status, run.unreadable or run.interrupted or run.error
        job = jobs.jobs.get(run.run_id)
        if job is not None and job.cancelled and (
                status in ("interrupted", "failed") or (status == "running" and not job.running)):
            status, error = "cancelled", run.error or "cancelled from JupyterLab"
        elif job is not None and not job.running and status == "running":
            status = "failed"  # its process has ended, its record says nothing of it
        history.append({
            "run_id": run.run_id, "status": status, "started": run.started,
            "ended": run.ended, "duration": run.duration, "metrics": run.metrics,
            "parameters": run.parameters, "started_by": run.started_by, "error": error,
            # the job that started a scheduled run, so the history can mark it
            "job": run.trigger.get("job") if isinstance(run.trigger, dict) else None,
        })
    return history
