"""The embedded scheduler: runs due jobs, each in a process of its own, and records them.

One loop, no service: ``jupyter mlops scheduler`` runs it in the foreground and the Jupyter
server runs it in a thread while JupyterLab is up. Each pass (:meth:`Scheduler.tick`):

1. **Settle** the slots recorded ``started``: a run whose process has ended (this
   scheduler's child, or one a scheduler that has since stopped left behind) gets its
   outcome from the run store, and its alerts go out, once (:meth:`JobStore.finish` is the
   one conditional update that decides who sends them).
2. **Start** what is due. A job's due slot is the latest slot at or before now that comes
   after its last slot: after downtime that is one catch-up run, however many slots were
   missed (the count is recorded). The slot is claimed by inserting its row, which only one
   scheduler on a store can do (the lease). A job whose last run still goes has the slot
   recorded ``skipped``; a job whose pipeline no longer reads is marked ``broken`` and the
   loop goes on.

Then it sleeps until the next slot is due, or :attr:`Scheduler.poll` seconds to notice new
or changed jobs, whichever is sooner. A store that is locked, missing or damaged is logged
and tried again on the next pass; nothing a store or a run does ends the loop.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from . import registry
from .alerts import alert_failed, send_alerts
from .store import ACTIVE, BROKEN, Job, JobStore, Slot

__all__ = ["Scheduler", "LOG"]

LOG = logging.getLogger("jupyter_mlops.scheduler")
#: Seconds a claimed slot may go without a run record before its process is presumed lost
#: (on another host, whose processes cannot be asked).
NO_RECORD_AFTER = 600.0


@dataclass
class _Child:
    """A run this scheduler started."""

    store: Path
    slot: Slot
    process: subprocess.Popen[bytes]
    log: Path


def _iso(stamp: float | None) -> str | None:
    return None if stamp is None else datetime.fromtimestamp(stamp, timezone.utc).isoformat()


class _Watched:
    """One store the scheduler reads: its connection, and its jobs while they do not change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jobs = JobStore(path)
        # a pass waits this long for a locked store, then tries again on the next pass
        self.jobs.db.execute("PRAGMA busy_timeout=1000")
        self.version: int | None = None
        self.cached: tuple[list[Job], dict[str, float]] = ([], {})
        #: Per job, its next slot for the (schedule, since, last slot) it was computed from:
        #: a pass over 100 idle jobs steps no cron expression.
        self.upcoming: dict[str, tuple[Any, float]] = {}

    def current(self, wrote: bool) -> tuple[list[Job], dict[str, float]]:
        """The store's jobs and each job's last due time, read again only when it changed."""
        version = self.jobs.db.execute("PRAGMA data_version").fetchone()[0]
        if wrote or version != self.version:
            self.cached = (self.jobs.jobs(), self.jobs.last_due())
            self.version = version
        return self.cached


class Scheduler:
    """Runs the due jobs of the stores ``stores()`` names, on every :meth:`tick`."""

    def __init__(self, stores: Callable[[], list[Path]], *, poll: float = 1.0,
                 python: str | None = None, drop_missing: bool = False) -> None:
        self.stores = stores
        self.poll = poll
        self.python = python or sys.executable
        #: Take a store that is gone off the user's list (when the list named it).
        self.drop_missing = drop_missing
        self.name = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"
        self.children: dict[tuple[Path, str, float], _Child] = {}
        self._watched: dict[Path, _Watched] = {}
        self._complained: set[str] = set()
        #: Set to end :meth:`run` (when no other event was given to it).
        self.stopped = threading.Event()

    # -- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Tick until ``stop`` (or :attr:`stopped`) is set; the runs started go on after (a
        next scheduler settles them)."""
        stop = stop or self.stopped
        LOG.info("scheduler %s started", self.name)
        while not stop.is_set():
            stop.wait(self.tick())
        self.close()
        LOG.info("scheduler %s stopped", self.name)

    def tick(self, now: float | None = None) -> float:
        """One pass over every store; the seconds until the next pass is due."""
        wait = self.poll
        for path in self.stores():
            try:
                wait = min(wait, self._pass(Path(path), now))
                self._complained.discard(str(path))
            except (MlopsError, sqlite3.Error, OSError) as err:
                self._complain(str(path), f"store {path}: {err}; trying again")
            except Exception as err:  # a bug of ours, or a row damaged outside: never the end
                self._complain(str(path), f"store {path}: internal error {type(err).__name__}: "
                               f"{err} (please report it); trying again")
        return max(wait, 0.005)

    def _complain(self, key: str, message: str) -> None:
        # a store locked for a minute is one line in the log, not sixty
        if key not in self._complained:
            self._complained.add(key)
            LOG.warning("%s", message)

    def close(self) -> None:
        """Close the stores' connections (children are left to finish)."""
        for watched in self._watched.values():
            watched.jobs.close()
        self._watched.clear()

    # -- one store ---------------------------------------------------------------------------
    def _pass(self, path: Path, now: float | None) -> float:
        watched = self._watched.get(path)
        if not path.is_file():
            if watched is not None:
                watched.jobs.close()
                del self._watched[path]
            self._complain(str(path), f"store {path} is gone; its jobs cannot run")
            if self.drop_missing:
                registry.unregister(path)
            return self.poll
        if watched is None:
            watched = self._watched[path] = _Watched(path)
        wrote = self._settle(watched)
        jobs, last_due = watched.current(wrote)
        now = time.time() if now is None else now
        wait = self.poll
        busy = {slot.job: slot for slot in watched.jobs.started()} if jobs else {}
        for job in jobs:
            if job.state != ACTIVE:
                continue
            after = max(job.since, last_due.get(job.name, 0.0))
            key = (job.schedule, job.since, after)
            known = watched.upcoming.get(job.name)
            if known is not None and known[0] == key and now < known[1]:
                wait = min(wait, known[1] - now)
                continue
            due = job.schedule.latest(now, after)
            if due is None:
                upcoming = job.schedule.next_after(max(now, after), job.since)
                watched.upcoming[job.name] = (key, upcoming)
                wait = min(wait, upcoming - now)
                continue
            self._due(watched, job, due, after, busy.get(job.name))
            watched.version = None  # we wrote: read the jobs again next time
            wait = 0.0
        return wait

    def _due(self, watched: _Watched, job: Job, due: float, after: float,
             going: Slot | None) -> None:
        missed = max(job.schedule.slots_between(after, due) - 1, 0)
        slot = Slot(job=job.name, due=due, trigger="catch-up" if missed else "schedule",
                    claimed=time.time(), scheduler=self.name, outcome="started",
                    missed=missed, host=socket.gethostname())
        if going is not None:
            slot.outcome, slot.reason = "skipped", (
                f"run {going.run_id} of the slot due {_iso(going.due)} was still going")
            slot.ended = slot.claimed
            if watched.jobs.claim(slot):
                LOG.info("job %s: slot due %s skipped: %s", job.name, _iso(due), slot.reason)
            return
        problem = _unreadable(job)
        if problem:
            watched.jobs.set_state(job.name, BROKEN, problem)
            LOG.warning("job %s is broken: %s; fix it, then `jupyter mlops jobs resume %s`",
                        job.name, problem, job.name)
            self._alert(watched.jobs, job, slot, {"status": "broken", "error": problem})
            return
        from ..run.results import new_run_id

        slot.run_id = new_run_id()
        if not watched.jobs.claim(slot):
            return  # another scheduler on this store took the slot first
        self._start(watched, job, slot)

    def _start(self, watched: _Watched, job: Job, slot: Slot) -> None:
        logs = watched.path.parent / "jobs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{job.name}-{slot.run_id}.log"
        trigger = {"trigger": slot.trigger, "job": job.name, "due": slot.due,
                   "missed": slot.missed, "scheduler": self.name}
        command = [self.python, "-m", "jupyter_mlops.jobs.runjob", str(job.pipeline),
                   "--run-id", str(slot.run_id), "--store", str(watched.path),
                   "--parameters", json.dumps(job.parameters, default=str),
                   "--trigger", json.dumps(trigger)]
        try:
            with open(log, "wb") as out:
                # a session of its own: stopping the scheduler (Ctrl-C) leaves its runs going
                process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            reason = f"the run's process could not start: {err.strerror or err}"
            if watched.jobs.finish(job.name, slot.due, "failed", reason):
                LOG.warning("job %s: %s", job.name, reason)
                self._alert(watched.jobs, job, slot, {"status": "failed", "error": reason})
            return
        watched.jobs.set_pid(job.name, slot.due, process.pid)
        self.children[(watched.path, job.name, slot.due)] = _Child(watched.path, slot, process,
                                                                   log)
        late = slot.claimed - slot.due
        extra = f", catching up {slot.missed} missed slot(s)" if slot.missed else ""
        LOG.info("job %s: started run %s (due %s, %.2f s late%s)", job.name, slot.run_id,
                 _iso(slot.due), late, extra)

    # -- settling ----------------------------------------------------------------------------
    def _settle(self, watched: _Watched) -> bool:
        """Record the end of every started slot whose run has ended; True if any was."""
        wrote = False
        for slot in watched.jobs.started():
            ended = self._ended(watched, slot)
            if ended is None:
                continue
            wrote = True
            summary = self._summary(watched, slot, *ended)
            if watched.jobs.finish(slot.job, slot.due, summary["status"], summary["error"]):
                LOG.info("job %s: run %s %s%s", slot.job, slot.run_id, summary["status"],
                         f": {summary['error']}" if summary["error"] else "")
                try:
                    job = watched.jobs.job(slot.job)
                except MlopsError:
                    continue  # deleted meanwhile: nobody left to tell
                self._alert(watched.jobs, job, slot, summary)
        return wrote

    def _ended(self, watched: _Watched, slot: Slot) -> tuple[str, str | None] | None:
        """(outcome, reason) of a started slot whose run is over, or None while it goes."""
        child = self.children.get((watched.path, slot.job, slot.due))
        if child is not None:
            if child.process.poll() is None:
                return None
            del self.children[(watched.path, slot.job, slot.due)]
            return _from_record(watched.jobs, slot, _last_line(child.log))
        run = _record(watched.jobs, slot.run_id)
        if run is not None:
            from ..run.liveness import runner_gone

            if run.status == "running":
                gone = runner_gone(run)
                return None if gone is None else ("failed", f"interrupted: {gone}")
            return run.status, run.error
        if slot.host == socket.gethostname() and slot.pid and not _alive(slot.pid):
            return "failed", "the run's process ended before it recorded the run"
        if time.time() - slot.claimed > NO_RECORD_AFTER:
            return "failed", f"no run was recorded within {NO_RECORD_AFTER:.0f} s"
        return None

    def _summary(self, watched: _Watched, slot: Slot, status: str,
                 error: str | None) -> dict[str, Any]:
        run = _record(watched.jobs, slot.run_id)
        return {"job": slot.job, "pipeline": run.pipeline if run else None,
                "run_id": slot.run_id, "status": status, "error": error,
                "due": _iso(slot.due), "trigger": slot.trigger,
                "folder": run.folder if run else None,
                "metrics": dict(run.metrics) if run else {}}

    def _alert(self, jobs: JobStore, job: Job, slot: Slot, summary: dict[str, Any]) -> None:
        summary = {"job": job.name, "pipeline": str(job.pipeline), "run_id": slot.run_id,
                   "due": _iso(slot.due), "trigger": slot.trigger, **summary}
        summary["pipeline"] = summary["pipeline"] or str(job.pipeline)
        outcome = send_alerts(job, summary)
        if outcome is None:
            return
        if slot.run_id is not None:
            jobs.set_alert(job.name, slot.due, outcome)
        (LOG.warning if alert_failed(outcome) else LOG.info)("job %s: alert: %s", job.name,
                                                              outcome)


def _from_record(jobs: JobStore, slot: Slot, said: str | None) -> tuple[str, str | None]:
    """How a run this scheduler's child made ended, from its record, else its last line."""
    run = _record(jobs, slot.run_id)
    if run is None:
        return "failed", said or "the run's process ended before it recorded the run"
    if run.status == "running":  # killed before it could write its end
        return "failed", said or "the run's process ended without recording the run's end"
    return run.status, run.error


def _record(jobs: JobStore, run_id: str | None) -> Any:
    if not run_id:
        return None
    try:
        run = jobs.run(run_id)
    except MlopsError:
        return None
    return None if run.unreadable else run


def _last_line(log: Path) -> str | None:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1].removeprefix("error: ") if lines else None


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _unreadable(job: Job) -> str | None:
    """Why the job's pipeline cannot run any more, or None."""
    from ..pipeline.spec import PipelineSpec

    try:
        spec = PipelineSpec.read(job.pipeline)
        spec.parse_parameters([])
        for name in job.parameters:
            spec.parameter(name)
    except MlopsError as err:
        return str(err)
    return None


def run_now(path: Path, name: str) -> Slot:
    """Run job ``name`` of the store at ``path`` now, as a ``manual`` slot, and wait for it:
    the same process, records and alerts as a scheduled run. Refused while its last run
    goes. Returns the slot as it ended."""
    scheduler = Scheduler(lambda: [path])
    try:
        watched = scheduler._watched[path] = _Watched(path)
        scheduler._settle(watched)
        job = watched.jobs.job(name)
        going = next((s for s in watched.jobs.started() if s.job == name), None)
        if going is not None:
            raise MlopsError(f"job {name} is running run {going.run_id} (due {_iso(going.due)}); "
                             "wait for it to end")
        problem = _unreadable(job)
        if problem:
            raise MlopsError(f"job {name} cannot run: {problem}")
        from ..run.results import new_run_id

        now = time.time()
        slot = Slot(job=name, due=now, trigger="manual", claimed=now, scheduler=scheduler.name,
                    outcome="started", run_id=new_run_id(), host=socket.gethostname())
        watched.jobs.claim(slot)
        scheduler._start(watched, job, slot)
        child = scheduler.children[(path, name, slot.due)]
        try:
            child.process.wait()
        except KeyboardInterrupt:
            child.process.terminate()
            child.process.wait()
        scheduler._settle(watched)
        return next(s for s in watched.jobs.slots(name) if s.due == slot.due)
    finally:
        scheduler.close()
