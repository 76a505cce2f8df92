"""What the sidebar shows that no other face prints: captured values, the run history, and a
run's status with its files named as the contents API spells them."""

from __future__ import annotations

import json
import os
import re
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
    "cell_total": _NUMBER, "cached_from": _TEXT, "cells": _NUMBER, "source_cell": _NUMBER,
    "error_cell": _NUMBER}
#: What each step of a run's status has, null when its ``run.json`` (an older one) lacks it.
_PROGRESS = ("cell", "cells", "source_cell", "error_cell")
#: The texts of a run's status that the server writes, which may name its files.
_SERVER_TEXTS = ("error", "folder")


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


def for_sidebar(data: dict[str, Any], root: Path) -> dict[str, Any]:
    """A run's status as the sidebar gets it: each path inside ``root`` that the record
    names (the run's folder, the executed notebooks, those in errors: the resume command,
    a notebook to see) relative to it, as the contents API spells it, so the server's own
    layout never shows and the sidebar can open what is named; each step with
    ``notebook_path``, its executed notebook so spelled ("" while there is none), and the
    progress fields of :class:`~..run.results.StepResult` (null where an older ``run.json``
    lacks them). What the run was given or made (parameters, outputs) is the author's, and
    stays as it is: a parameter is read relative to the notebook's folder, not the root."""
    from .guard import relative_to

    inside = _inside(root)
    for key in _SERVER_TEXTS:
        if key in data:
            data[key] = _relative(data[key], inside)
    for step in data.get("steps") or []:
        if not isinstance(step, dict):
            continue
        for name in _PROGRESS:
            step.setdefault(name, None)
        step["error"] = _relative(step.get("error"), inside)
        notebook = step.get("notebook")
        if not (isinstance(notebook, str) and notebook and os.path.isfile(notebook)):
            step["notebook"] = notebook = ""  # not executed (yet): nothing to open
        step["notebook_path"] = relative_to(root, notebook) if notebook else ""
        step["notebook"] = step["notebook_path"]  # never the server's own path
    return data


def _inside(root: Path) -> re.Pattern[str] | None:
    """What a path inside ``root`` starts with, in a text: the root itself, then ``/`` or the
    end of the path; None for a root of ``/``, whose paths are all inside."""
    if str(root) == root.anchor:
        return None
    return re.compile(re.escape(str(root)) + r"(?:/|(?![\w.-]))")


def _relative(text: Any, inside: re.Pattern[str] | None) -> Any:
    """``text`` with each path ``inside`` matches written relative to the root ("." for the
    root itself); anything but a text as it is."""
    if not isinstance(text, str) or inside is None:
        return text
    return inside.sub(lambda found: "" if found.group().endswith("/") else ".", text)


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


def run_history(pipeline: Path, jobs: LabJobs, limit: int = 20,
                root: Path | None = None) -> list[dict[str, Any]]:
    """The latest runs of ``pipeline``: status, duration, metrics, who started them.

    A run whose runner is gone reads ``interrupted``, its error saying why and how to resume
    it (the store decides, :func:`~jupyter_mlops.run.store.runner_gone`); one this server
    cancelled reads ``cancelled`` while its end is being recorded. Given the server's
    ``root``, the paths in errors (the resume command's) are relative to it, as in a run's
    status (:func:`for_sidebar`)."""
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
    if root is not None:
        inside = _inside(root)
        for run_line in history:
            run_line["error"] = _relative(run_line["error"], inside)
    return history
