"""Text views of recorded runs: the runs table, one run, and two runs side by side."""

from __future__ import annotations

import time
from typing import Any

from .compare import compare_runs
from .records import RunRecord


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp)) if stamp else "-"


def _seconds(run: RunRecord) -> str:
    return "-" if run.duration is None else f"{run.duration:.1f} s"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def runs_table(runs: list[RunRecord]) -> str:
    """One line per run, newest first: id, status, start, duration, steps run, metrics; an
    interrupted run has a second line, indented, saying why and how to resume it."""
    if not runs:
        return "No runs yet: `jupyter mlops run PIPELINE_DIR` records one."
    lines = [f"{'run':<23}  {'status':<11}  {'started':<19}  {'time':>8}  steps      metrics"]
    for run in runs:
        if run.unreadable:  # one line, so that the runs around it still list
            lines.append(f"{run.run_id:<23}  {run.status:<11}  {_when(run.started)}  "
                         f"unreadable: {run.unreadable}")
            continue
        ran = sum(1 for s in run.steps if s.status == "done" and not s.cached_from)
        cached = sum(1 for s in run.steps if s.cached_from)
        metrics = ", ".join(f"{k}={_short(v)}" for k, v in run.metrics.items())
        lines.append(f"{run.run_id:<23}  {run.status:<11}  {_when(run.started)}  "
                     f"{_seconds(run):>8}  {ran} run, {cached} cached  {metrics}"
                     f"{_serving(run)}")
        if run.interrupted:
            lines.append(f"{'':<23}  interrupted: {run.interrupted}")
    return "\n".join(lines)


def _serving(run: RunRecord) -> str:
    """`` [served]`` for the run in service, and why a retraining run started."""
    notes = ["served"] if run.served else []
    trigger = run.trigger
    if isinstance(trigger, dict) and trigger.get("job"):
        notes.append(f"scheduled: job {trigger['job']}, {trigger.get('trigger', '?')}")
    elif isinstance(trigger, dict):
        replaces = f" of {run.replaces}" if run.replaces else ""
        notes.append(f"retrain ({trigger.get('trigger', '?')}){replaces}")
    return f"  [{'; '.join(notes)}]" if notes else ""


def run_details(run: RunRecord) -> str:
    """Everything recorded about one run."""
    lines = [f"Run {run.run_id} of `{run.pipeline}`: {run.status}, started "
             f"{_when(run.started)} by {run.started_by}, {_seconds(run)}",
             f"  folder:      {run.folder}",
             f"  spec sha256: {run.spec_sha256}",
             f"  python:      {run.environment.get('python')}, git commit "
             f"{run.environment.get('git_commit') or '-'}"]
    if run.parameters:
        lines.append("  parameters:  " + ", ".join(f"{k}={v!r}"
                                                   for k, v in run.parameters.items()))
    if run.runner_pid is not None:
        lines.append(f"  runner:      pid {run.runner_pid} on host {run.runner_host}, last "
                     f"heartbeat {_when(run.heartbeat)}")
    if run.interrupted:
        lines.append(f"  interrupted: {run.interrupted}")
    if run.error:
        lines.append(f"  error:       {run.error}")
    if isinstance(run.trigger, dict) and run.trigger.get("job"):
        lines.append(f"  scheduled:   job {run.trigger['job']} ({run.trigger.get('trigger')}), "
                     f"due {_when(run.trigger.get('due'))}")
    elif isinstance(run.trigger, dict):
        reasons = "; ".join(run.trigger.get("reasons") or []) or run.trigger.get(
            "trigger", "?")
        lines.append(f"  retraining:  {reasons}; would replace {run.replaces or '-'}")
    lines.append("Steps:")
    for step in run.steps:
        took = "-" if step.duration is None else f"{step.duration:.1f} s"
        origin = f" (reused from {step.cached_from})" if step.cached_from else ""
        lines.append(f"  {step.step}: {step.status}{origin}, {took}")
        for name, manifest in step.outputs.items():
            lines.append(f"    {name}: {manifest.get('kind')} sha256 {manifest['sha256'][:12]}")
        for path, digest in step.files.items():
            lines.append(f"    reads {path}: sha256 {digest[:12]}")
    if run.metrics:
        lines.append("Metrics: " + ", ".join(f"{k} = {_short(v)}"
                                             for k, v in run.metrics.items()))
    return "\n".join(lines)


def runs_diff(a: RunRecord, b: RunRecord) -> str:
    """Parameters, data fingerprints, artifacts and metrics of two runs side by side."""
    comparison = compare_runs(a, b)
    rows: list[tuple[str, str, str]] = []
    for section, compared, digits in (("param", comparison.parameters, None),
                                      ("file", comparison.files, 12),
                                      ("output", comparison.outputs, 12),
                                      ("metric", comparison.metrics, None)):
        for row in compared:
            rows.append((f"{section} {row.name}{'  *' if row.changed else ''}",
                         _cell(row.a, row.in_a, digits), _cell(row.b, row.in_b, digits)))
    width = max([len(r[0]) for r in rows] + [5])
    lines = [f"{'':<{width}}  {a.run_id:<23}  {b.run_id}"]
    lines += [f"{name:<{width}}  {x:<23}  {y}" for name, x, y in rows]
    lines.append("(* differs)")
    return "\n".join(lines)


def _cell(value: Any, present: bool, digits: int | None) -> str:
    """A value of the diff: ``-`` where the run has none, a hash cut to ``digits``."""
    if not present:
        return "-"
    return _short(value[:digits] if digits and isinstance(value, str) else value)
