"""Making and changing jobs: the one library call behind each face's verb.

``jupyter mlops schedule``/``jobs`` and the server's ``/mlops/jobs`` call these and nothing
else. Everything a job needs is checked when it is made (the pipeline reads, every parameter
parses as the pipeline types it, the schedule and the alerts are valid), so a job that exists
can only break when its pipeline changes under it.
"""

from __future__ import annotations

import getpass
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import shown
from ..pipeline.spec import PipelineSpec
from ..run.store import default_store
from . import registry
from .alerts import parse_condition
from .store import ACTIVE, PAUSED, Job, JobError, JobStore
from .timing import Schedule

if TYPE_CHECKING:
    from ..deploy.timetable import Timetable

__all__ = ["create_job", "get_job", "job_timetable", "list_jobs", "set_job_state",
           "delete_job", "job_view", "open_store"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def open_store(pipeline_dir: str | Path, store: str | Path | None = None, *,
               must_exist: bool = True) -> JobStore:
    """The job store of a pipeline (its run store unless ``store`` names another)."""
    path = Path(store) if store else default_store(pipeline_dir)
    if must_exist and not path.is_file():
        raise JobError(f"no run store at {path}, so no jobs; make one with `jupyter mlops "
                       "schedule PIPELINE_DIR --every 1h`, or name the folder with -C")
    return JobStore(path)


def _check_alerts(on_failure: str | None, webhook: str | None, notify: str,
                  alert_if: Sequence[str]) -> None:
    if notify not in ("failure", "always"):
        raise JobError(f"--notify must be failure or always, not {shown(notify)}")
    if webhook is not None:
        parts = urlsplit(webhook)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise JobError(f"webhook `{shown(webhook)}` is not an http(s) URL")
    if on_failure is not None and not on_failure.strip():
        raise JobError("--on-failure needs a command")
    for condition in alert_if:
        parse_condition(condition)


def create_job(pipeline_dir: str | Path, schedule: Schedule, *, assignments: Sequence[str] = (),
               name: str | None = None, store: str | Path | None = None,
               alerts: dict[str, Any] | None = None) -> Job:
    """Record a new job of the pipeline in ``pipeline_dir`` and list its store for schedulers.

    ``assignments`` are ``NAME=VALUE`` texts, typed as the pipeline's parameters are;
    ``alerts`` may hold ``on_failure`` (a command), ``webhook`` (a URL), ``notify``
    (``failure``/``always``) and ``alert_if`` (metric conditions such as ``accuracy<0.8``).
    """
    folder = Path(pipeline_dir).resolve()
    spec = PipelineSpec.read(folder)
    parameters = spec.parse_parameters(list(assignments))
    name = spec.name if name is None else name
    if not _NAME.fullmatch(name):
        raise JobError(f"job name `{shown(name)}` is not usable; use letters, digits, `_`, "
                       "`.` or `-` (up to 64), starting with a letter or digit")
    alerts = dict(alerts or {})
    unknown = set(alerts) - {"on_failure", "webhook", "notify", "alert_if"}
    if unknown:
        raise TypeError(f"unknown alert setting(s): {', '.join(sorted(unknown))}")
    notify, alert_if = alerts.get("notify") or "failure", list(alerts.get("alert_if") or [])
    _check_alerts(alerts.get("on_failure"), alerts.get("webhook"), notify, alert_if)
    now = time.time()
    job = Job(name=name, pipeline=folder, schedule=schedule, parameters=parameters,
              owner=_owner(), on_failure=alerts.get("on_failure"),
              webhook=alerts.get("webhook"), notify=notify, alert_if=alert_if, created=now,
              since=now)
    jobs = open_store(folder, store, must_exist=False)
    try:
        jobs.add_job(job)
    finally:
        jobs.close()
    registry.register(Path(store) if store else default_store(folder))
    return job


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        return "unknown"


def get_job(pipeline_dir: str | Path, name: str, *, store: str | Path | None = None) -> Job:
    """The job called ``name`` of the pipeline in ``pipeline_dir``."""
    jobs = open_store(pipeline_dir, store)
    try:
        return jobs.job(name)
    finally:
        jobs.close()


def job_timetable(pipeline_dir: str | Path, name: str, *, store: str | Path | None = None
                  ) -> Timetable:
    """The job called ``name`` as the Airflow and Kubeflow exports take it (``--job``)."""
    from ..deploy.timetable import Timetable

    job = get_job(pipeline_dir, name, store=store)
    return Timetable(name=job.name, cron=job.schedule.cron, tz=job.schedule.tz,
                     every=job.schedule.every, parameters=dict(job.parameters),
                     enabled=job.state == "active")


def job_view(jobs: JobStore, job: Job, now: float | None = None,
             last: int = 5) -> dict[str, Any]:
    """A job with its next run time and its last slots, as JSON."""
    now = time.time() if now is None else now
    slots = jobs.slots(job.name, limit=last)
    view = job.to_json()
    view["next_run"] = next_run(job, jobs.last_due().get(job.name), now)
    view["last_runs"] = [slot.to_json() for slot in slots]
    return view


def next_run(job: Job, last_due: float | None, now: float) -> float | None:
    """When the job runs next (None while it is paused or broken)."""
    if job.state != ACTIVE:
        return None
    after = max(job.since, last_due or 0.0)
    # a slot missed while no scheduler ran is run at once, as one catch-up run
    latest = job.schedule.latest(now, after)
    return latest if latest is not None else job.schedule.next_after(max(now, after),
                                                                      job.since)


def list_jobs(pipeline_dir: str | Path, *, store: str | Path | None = None) -> list[dict[str, Any]]:
    """Every job of the pipeline, each with its next run and last runs."""
    path = Path(store) if store else default_store(pipeline_dir)
    if not path.is_file() and (Path(pipeline_dir) / "pipeline.yaml").is_file():
        return []  # a pipeline never run nor scheduled
    jobs = open_store(pipeline_dir, store)
    try:
        return [job_view(jobs, job) for job in jobs.jobs()]
    finally:
        jobs.close()


def set_job_state(pipeline_dir: str | Path, name: str, state: str, *,
                  store: str | Path | None = None) -> dict[str, Any]:
    """Pause (``paused``) or resume (``active``) a job; a resumed job counts its slots from
    now, so the runs it missed while paused are not caught up. Returns its view."""
    if state not in (ACTIVE, PAUSED):
        raise JobError(f"a job is paused or resumed, not set to {shown(state)}")
    jobs = open_store(pipeline_dir, store)
    try:
        if state == ACTIVE and jobs.job(name).state == ACTIVE:
            return job_view(jobs, jobs.job(name))
        return job_view(jobs, jobs.set_state(name, state))
    finally:
        jobs.close()


def delete_job(pipeline_dir: str | Path, name: str, *, store: str | Path | None = None) -> None:
    """Forget a job (its runs stay); a store left with no jobs leaves the schedulers' list."""
    jobs = open_store(pipeline_dir, store)
    try:
        jobs.delete_job(name)
        empty = not jobs.jobs()
    finally:
        jobs.close()
    if empty:
        registry.unregister(jobs.path)
