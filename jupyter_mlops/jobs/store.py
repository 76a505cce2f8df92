"""Jobs and their slots, kept in the pipeline's run store beside its runs.

A job is a pipeline, typed parameters and a schedule. Each time the schedule comes due is a
*slot*; a slot row is made once, by whichever scheduler inserts it first (its primary key is
the job and the due time, so a second scheduler's insert is ignored): that insert is the
lease that keeps two schedulers on one store from starting the same run twice. The row then
says what became of the slot: ``started`` (with its run id), ``skipped`` (the job's last
run was still going) or how the run ended, and what its alerts did.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlopsError, shown
from ..run.store import RunStore
from .timing import Schedule

__all__ = ["Job", "JobStore", "Slot", "JobError", "NoSuchJob", "ACTIVE", "PAUSED", "BROKEN"]

ACTIVE, PAUSED, BROKEN = "active", "paused", "broken"
#: Outcomes of a slot whose run has ended.
ENDED = ("succeeded", "failed", "cancelled", "skipped")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, pipeline TEXT NOT NULL, parameters TEXT NOT NULL,
    schedule TEXT NOT NULL, owner TEXT NOT NULL, state TEXT NOT NULL,
    on_failure TEXT, webhook TEXT, notify TEXT NOT NULL, alert_if TEXT NOT NULL,
    created REAL NOT NULL, since REAL NOT NULL, broken TEXT
);
CREATE TABLE IF NOT EXISTS job_slots (
    job TEXT NOT NULL, due REAL NOT NULL, trigger TEXT NOT NULL, claimed REAL NOT NULL,
    scheduler TEXT NOT NULL, run_id TEXT, outcome TEXT NOT NULL, reason TEXT,
    missed INTEGER NOT NULL DEFAULT 0, host TEXT, pid INTEGER, ended REAL, alert TEXT,
    PRIMARY KEY (job, due)
);
"""


class JobError(MlopsError):
    """A job that cannot be made, found or changed."""


class NoSuchJob(JobError):
    """No job has the name asked for (the server answers 404)."""


@dataclass
class Job:
    """One scheduled job: what to run, when, and whom to tell."""

    name: str
    pipeline: Path
    schedule: Schedule
    parameters: dict[str, Any] = field(default_factory=dict)
    owner: str = ""
    #: ``active``, ``paused`` or ``broken`` (its pipeline cannot be read; see ``broken``).
    state: str = ACTIVE
    #: A shell command run when an alert is due, the run's summary in its environment.
    on_failure: str | None = None
    #: A URL the run's summary is POSTed to as JSON when an alert is due.
    webhook: str | None = None
    #: ``failure``: alert when a run fails; ``always``: after every run.
    notify: str = "failure"
    #: Metric conditions (``accuracy<0.8``) that make a succeeded run alert too.
    alert_if: list[str] = field(default_factory=list)
    created: float = 0.0
    #: Slots count from here: the job's making, or its last resume.
    since: float = 0.0
    #: Why the job is broken.
    broken: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The job as the CLI's ``--json`` and the server print it."""
        data = asdict(self)
        data["pipeline"] = str(self.pipeline)
        data["schedule"] = {**self.schedule.to_json(), "text": self.schedule.describe()}
        return data


@dataclass
class Slot:
    """One due time of a job and what became of it."""

    job: str
    due: float
    #: ``schedule``, ``catch-up`` (the last of several slots missed) or ``manual``.
    trigger: str
    claimed: float
    scheduler: str
    outcome: str
    run_id: str | None = None
    reason: str | None = None
    missed: int = 0
    host: str | None = None
    pid: int | None = None
    ended: float | None = None
    alert: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The slot as JSON, with how late its run started."""
        return {**asdict(self), "late": round(self.claimed - self.due, 3)}


_JOB_COLUMNS = ("name, pipeline, parameters, schedule, owner, state, on_failure, webhook, "
                "notify, alert_if, created, since, broken")
_SLOT_COLUMNS = ("job, due, trigger, claimed, scheduler, run_id, outcome, reason, missed, "
                 "host, pid, ended, alert")


def _slot(row: tuple[Any, ...]) -> Slot:
    return Slot(**dict(zip((c.strip() for c in _SLOT_COLUMNS.split(",")), row, strict=True)))


class JobStore(RunStore):
    """The run store, with its jobs and their slots."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        with self._tx() as db:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    # -- jobs ------------------------------------------------------------------------------
    def add_job(self, job: Job) -> None:
        """Record a new job; a name taken already is refused."""
        row = (job.name, self._stored(job.pipeline), json.dumps(job.parameters, default=str),
               json.dumps(job.schedule.to_json()), job.owner, job.state, job.on_failure,
               job.webhook, job.notify, json.dumps(job.alert_if), job.created, job.since,
               job.broken)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM jobs WHERE name=?", (job.name,)).fetchone():
                raise JobError(f"a job named {job.name} exists already; choose another name, "
                               "or delete that job first")
            db.execute(f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES "
                       "(?,?,?,?,?,?,?,?,?,?,?,?,?)", row)

    def jobs(self) -> list[Job]:
        """Every job of this store, by name."""
        rows = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY name").fetchall()
        return [self._job(row) for row in rows]

    def job(self, name: str) -> Job:
        """The job called ``name``; :class:`JobError` naming the jobs there are."""
        row = self.db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name=?",
                              (name,)).fetchone()
        if row is None:
            names = [j.name for j in self.jobs()]
            there = f"the jobs are {', '.join(names)}" if names else "it has no jobs"
            raise NoSuchJob(f"no job named {shown(name)}; {there}")
        return self._job(row)

    def _job(self, row: tuple[Any, ...]) -> Job:
        return Job(name=row[0], pipeline=Path(self._folder(row[1])),
                   parameters=json.loads(row[2]), schedule=Schedule.from_json(json.loads(row[3])),
                   owner=row[4], state=row[5], on_failure=row[6], webhook=row[7], notify=row[8],
                   alert_if=json.loads(row[9]), created=row[10], since=row[11], broken=row[12])

    def set_state(self, name: str, state: str, broken: str | None = None) -> Job:
        """Pause, resume (slots count again from now) or break a job; the job after it."""
        self.job(name)
        with self._tx() as db:
            if state == ACTIVE:
                db.execute("UPDATE jobs SET state=?, broken=NULL, since=? WHERE name=?",
                           (state, time.time(), name))
            else:
                db.execute("UPDATE jobs SET state=?, broken=? WHERE name=?",
                           (state, broken, name))
        return self.job(name)

    def delete_job(self, name: str) -> None:
        """Forget a job and its slots (the runs it started stay)."""
        self.job(name)
        with self._tx() as db:
            db.execute("DELETE FROM jobs WHERE name=?", (name,))
            db.execute("DELETE FROM job_slots WHERE job=?", (name,))

    # -- slots -----------------------------------------------------------------------------
    def claim(self, slot: Slot) -> bool:
        """Take ``slot`` for this scheduler: False if another took it first."""
        values = tuple(asdict(slot)[c.strip()] for c in _SLOT_COLUMNS.split(","))
        with self._tx() as db:
            cursor = db.execute(f"INSERT OR IGNORE INTO job_slots ({_SLOT_COLUMNS}) VALUES "
                                "(?,?,?,?,?,?,?,?,?,?,?,?,?)", values)
            return cursor.rowcount == 1

    def set_pid(self, job: str, due: float, pid: int) -> None:
        """Record the process that runs a started slot."""
        with self._tx() as db:
            db.execute("UPDATE job_slots SET pid=? WHERE job=? AND due=?", (pid, job, due))

    def finish(self, job: str, due: float, outcome: str, reason: str | None) -> bool:
        """Record how a started slot ended; False if someone recorded it first (then
        whoever did sends its alerts, so they go once)."""
        with self._tx() as db:
            cursor = db.execute("UPDATE job_slots SET outcome=?, reason=?, ended=? WHERE "
                                "job=? AND due=? AND outcome='started'",
                                (outcome, reason, time.time(), job, due))
            return cursor.rowcount == 1

    def set_alert(self, job: str, due: float, alert: str) -> None:
        """Record what a slot's alerts did."""
        with self._tx() as db:
            db.execute("UPDATE job_slots SET alert=? WHERE job=? AND due=?", (alert, job, due))

    def slots(self, job: str | None = None, limit: int = 20) -> list[Slot]:
        """The latest slots, newest first (of one job, or of all)."""
        where, args = ("WHERE job=?", (job, limit)) if job else ("", (limit,))
        rows = self.db.execute(f"SELECT {_SLOT_COLUMNS} FROM job_slots {where} "
                               "ORDER BY due DESC LIMIT ?", args).fetchall()
        return [_slot(row) for row in rows]

    def started(self) -> list[Slot]:
        """Every slot recorded ``started``: runs that may still be going."""
        rows = self.db.execute(f"SELECT {_SLOT_COLUMNS} FROM job_slots "
                               "WHERE outcome='started'").fetchall()
        return [_slot(row) for row in rows]

    def last_due(self) -> dict[str, float]:
        """Per job, its latest slot's due time (any outcome)."""
        rows = self.db.execute("SELECT job, MAX(due) FROM job_slots "
                               "WHERE trigger != 'manual' GROUP BY job").fetchall()
        return {job: due for job, due in rows}
