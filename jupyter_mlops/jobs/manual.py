"""``jobs run JOB``: a job's run now, by hand, recorded and alerted as a scheduled one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .api import open_store

__all__ = ["ManualRun", "run_job_now"]


@dataclass(frozen=True)
class ManualRun:
    """How a run started by hand ended: the line to print and the exit code."""

    line: str
    exit_code: int


def run_job_now(pipeline_dir: str | Path, name: str, *,
                store: str | Path | None = None) -> ManualRun:
    """Run job ``name`` now and wait for it (exit 0 succeeded, 1 otherwise)."""
    from .scheduler import run_now

    jobs = open_store(pipeline_dir, store)
    path = jobs.path
    jobs.close()
    slot = run_now(path, name)
    reason = f": {slot.reason}" if slot.reason else ""
    alert = f" (alert: {slot.alert})" if slot.alert else ""
    return ManualRun(f"job {name}: run {slot.run_id} {slot.outcome}{reason}{alert}",
                     0 if slot.outcome == "succeeded" else 1)
