"""The run store: every run, step, artifact and metric in an embedded SQLite database.

One database per pipeline by default (``PIPELINE/.mlops/store.sqlite``). Each write is one
transaction, so a runner killed at any moment leaves no half-recorded run; WAL mode and a
busy timeout let several runs of the same pipeline share it.

A runner killed outright (SIGKILL, a power cut) cannot write its end, so a run records who
runs it: the runner's pid, host and process start time, and a heartbeat the runner renews
every :data:`.liveness.HEARTBEAT_INTERVAL` seconds (:class:`.heartbeat.Heartbeat`). Whoever
reads the run decides whether that runner is still there (:func:`runner_gone`): a run
recorded ``running`` whose runner is gone reads as ``interrupted``, with the figures that
show it and the command that resumes it. The row itself is left as it was written: reading
never rewrites a record, and ``--resume`` takes the run over (:meth:`RunStore.reopen_run`).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from .liveness import ago, runner_gone, who
from .records import Promotion, Runner, RunRecord, StepRecord
from .storerows import Damaged, manifest, number, run_record, step_record

STORE_DIR = ".mlops"
STORE_FILE = "store.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, spec_sha256 TEXT NOT NULL,
    status TEXT NOT NULL, started REAL NOT NULL, ended REAL, folder TEXT NOT NULL,
    parameters TEXT NOT NULL, environment TEXT NOT NULL, started_by TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, started REAL,
    ended REAL, cache_key TEXT, cached_from TEXT, notebook TEXT, error TEXT,
    checks TEXT NOT NULL DEFAULT '[]', files TEXT NOT NULL DEFAULT '{}',
    inputs TEXT NOT NULL DEFAULT '{}', code_sha256 TEXT, parameters TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL, step TEXT NOT NULL, name TEXT NOT NULL, sha256 TEXT NOT NULL,
    manifest TEXT NOT NULL, PRIMARY KEY (run_id, step, name)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (run_id, step, name)
);
CREATE TABLE IF NOT EXISTS cache (
    cache_key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS promotions (
    decided REAL NOT NULL, pipeline TEXT NOT NULL, served TEXT NOT NULL, candidate TEXT,
    previous TEXT, promoted INTEGER NOT NULL, reason TEXT NOT NULL
);
"""


#: Columns added to ``steps`` after its first version, for stores made before them.
_ADDED_STEP_COLUMNS = (
    ("files", "TEXT NOT NULL DEFAULT '{}'"),
    ("inputs", "TEXT NOT NULL DEFAULT '{}'"),
    ("code_sha256", "TEXT"),
    ("parameters", "TEXT NOT NULL DEFAULT '{}'"),
)

#: Columns added to ``runs`` after its first version: why a run started (a retraining
#: trigger with its scores, as JSON) and the run it was meant to replace.
_ADDED_RUN_COLUMNS = (
    ("trigger", "TEXT"),
    ("replaces", "TEXT"),
    # who runs it, and when it last said so (see runner_gone)
    ("runner_pid", "INTEGER"),
    ("runner_host", "TEXT"),
    ("runner_started", "REAL"),
    ("heartbeat", "REAL"),
)

_RUN_COLUMNS = ("run_id, pipeline, spec_sha256, status, started, ended, folder, parameters, "
                "environment, started_by, error")



class StoreWriteError(MlopsError):
    """The run store refused a write (a full disk, a read-only file): the run it was
    recording has failed, so the CLI exits 1."""

    exit_code = 1

    def __init__(self, path: Path, reason: str) -> None:
        hint = ("another process holds it; try again when that one has finished"
                if "locked" in reason else "free some disk space or make the store writable, "
                "then run the pipeline again")
        super().__init__(f"cannot write to the run store {path} ({reason}); {hint}")
        #: What the system or SQLite said.
        self.reason = reason


def _while_locked(action: Any, timeout: float = 30.0) -> Any:
    """Run ``action``, again while SQLite says the database is locked: switching a new store
    to WAL needs it alone, and SQLite may refuse at once instead of waiting its timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def default_store(pipeline_dir: str | Path) -> Path:
    """Where a pipeline's runs are recorded unless ``--store`` says otherwise."""
    return Path(pipeline_dir) / STORE_DIR / STORE_FILE


class RunStore:
    """A connection to one store; cheap to open, safe to share between processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        #: Per run, why a write of its records was refused: its end is recorded with it.
        self.refused: dict[str, str] = {}
        #: The runner ``start_run`` records (None: this process); tests set another.
        self.runner: Runner | None = None
        #: Run folders inside this folder (the pipeline's, for its own store) are recorded
        #: relative to it, so a copied or moved pipeline finds its own runs.
        self.base = self.path.resolve().parent.parent
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # autocommit off by default: every `with self._tx()` is one transaction
            self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                                      isolation_level=None)
            _while_locked(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self.db.execute("PRAGMA synchronous=NORMAL")
            # the schema in one write transaction taken up front: made as reads that then
            # write, several processes opening a new store at once could each be refused
            # ("database is locked") without waiting, as SQLite avoids a deadlock
            with self._tx() as db:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                self._migrate()
        except (OSError, sqlite3.Error, StoreWriteError) as err:
            reason = err.reason if isinstance(err, StoreWriteError) else _reason(err)
            raise MlopsError(f"cannot open the run store {self.path} ({reason}); check the "
                             "path or pass another with --store") from None

    def _migrate(self) -> None:
        """Add the columns a store made by an earlier jupyter-mlops lacks."""
        for table, added in (("steps", _ADDED_STEP_COLUMNS), ("runs", _ADDED_RUN_COLUMNS)):
            have = {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}
            for column, declaration in added:
                if column not in have:
                    try:
                        self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
                    except sqlite3.OperationalError as err:
                        # another process opening the same store added it first
                        if "duplicate column" not in str(err):
                            raise

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    @contextmanager
    def _tx(self, run_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction; a write the disk or SQLite refuses (full, read-only) is a
        :class:`StoreWriteError`, remembered for ``run_id`` so that its end says why."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self._rollback()
                raise
            self.db.execute("COMMIT")
        except (OSError, sqlite3.OperationalError) as err:  # not a bug's IntegrityError
            self._rollback()
            error = StoreWriteError(self.path, _reason(err))
            if run_id is not None:
                self.refused.setdefault(run_id, str(error))
            raise error from None

    def _rollback(self) -> None:
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:  # SQLite may have rolled back by itself (a full disk)
                pass

    # -- writing ---------------------------------------------------------------------------
    def start_run(self, run_id: str, pipeline: str, spec_sha256: str, folder: Path,
                  parameters: dict[str, Any], environment: dict[str, Any], started_by: str,
                  steps: list[str]) -> None:
        """Record a new run and its steps as pending, in one transaction; ``self.runner``
        (by default this process) is recorded as running it, with a first heartbeat."""
        runner = self.runner or Runner.this()
        now = time.time()
        with self._tx(run_id) as db:
            db.execute(f"INSERT INTO runs ({_RUN_COLUMNS}, runner_pid, runner_host, "
                       "runner_started, heartbeat) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                       (run_id, pipeline, spec_sha256, "running", now, None,
                        self._stored(folder), json.dumps(parameters, default=str),
                        json.dumps(environment), started_by, None, runner.pid, runner.host,
                        runner.started, now))
            db.executemany("INSERT OR IGNORE INTO steps (run_id, step, status) VALUES (?,?,?)",
                           [(run_id, step, "pending") for step in steps])

    def record_step(self, record: StepRecord) -> None:
        """A step's final state with its artifacts and metrics, in one transaction; a
        successful step's cache key then points at this run."""
        r = record
        with self._tx(r.run_id) as db:
            db.execute("UPDATE steps SET status=?, started=?, ended=?, cache_key=?, "
                       "cached_from=?, notebook=?, error=?, checks=?, files=?, inputs=?, "
                       "code_sha256=?, parameters=? WHERE run_id=? AND step=?",
                       (r.status, r.started, r.ended, r.cache_key, r.cached_from, r.notebook,
                        r.error, json.dumps(r.checks), json.dumps(r.files),
                        json.dumps(r.inputs), r.code_sha256,
                        json.dumps(r.parameters, default=str), r.run_id, r.step))
            db.execute("DELETE FROM artifacts WHERE run_id=? AND step=?", (r.run_id, r.step))
            db.executemany("INSERT INTO artifacts VALUES (?,?,?,?,?)",
                           [(r.run_id, r.step, name, m["sha256"], json.dumps(m))
                            for name, m in r.outputs.items()])
            db.execute("DELETE FROM metrics WHERE run_id=? AND step=?", (r.run_id, r.step))
            db.executemany("INSERT INTO metrics VALUES (?,?,?,?)",
                           [(r.run_id, r.step, name, value)
                            for name, value in r.metrics().items()])
            if r.status == "done" and r.cache_key and r.cached_from is None:
                db.execute("INSERT OR REPLACE INTO cache VALUES (?,?,?,?)",
                           (r.cache_key, r.run_id, r.step, time.time()))

    def mark_step(self, run_id: str, step: str, status: str, started: float | None) -> None:
        """A step's state while it runs (started)."""
        with self._tx(run_id) as db:
            db.execute("UPDATE steps SET status=?, started=? WHERE run_id=? AND step=?",
                       (status, started, run_id, step))

    def reopen_run(self, run_id: str, *, runner: Runner | None = None) -> None:
        """A run being resumed: running again, by ``runner`` (this process by default), its
        unfinished steps pending. A run whose runner is still there is refused
        (:class:`MlopsError`): checked in the same transaction as the takeover, so two
        resumes of one interrupted run cannot both run it."""
        self.refused.pop(run_id, None)
        runner = runner or Runner.this()
        with self._tx(run_id) as db:
            try:
                current = self._load(run_id)
            except Damaged as err:
                raise self._unreadable(run_id, err) from None
            if current.status == "running" and current.runner_pid is not None:
                raise MlopsError(
                    f"run {run_id} is still running ({who(current)}, last heartbeat "
                    f"{ago(current.heartbeat)}); wait for it to end, or stop it (SIGTERM, "
                    "or Cancel in JupyterLab) and resume it then")
            db.execute("UPDATE runs SET status='running', ended=NULL, error=NULL, "
                       "runner_pid=?, runner_host=?, runner_started=?, heartbeat=? "
                       "WHERE run_id=?",
                       (runner.pid, runner.host, runner.started, time.time(), run_id))
            db.execute("UPDATE steps SET status='pending', error=NULL WHERE run_id=? AND "
                       "status != 'done'", (run_id,))

    def finish_run(self, run_id: str, status: str, error: str | None) -> None:
        """A run's end. A run some of whose records could not be written has failed, and
        says why, whatever its steps did."""
        if run_id in self.refused:
            status, error = "failed", error or self.refused[run_id]
        with self._tx(run_id) as db:
            db.execute("UPDATE runs SET status=?, ended=?, error=? WHERE run_id=?",
                       (status, time.time(), error, run_id))

    def beat(self, run_id: str) -> None:
        """The heartbeat of a running run's runner: now (a run that has ended is left)."""
        with self._tx() as db:  # not the run's: a beat refused is no failure of the run
            db.execute("UPDATE runs SET heartbeat=? WHERE run_id=? AND status='running'",
                       (time.time(), run_id))

    def set_trigger(self, run_id: str, trigger: dict[str, Any], replaces: str | None) -> None:
        """Record why a run started (``{"trigger": ..., "scores": ...}``) and the run it
        would replace; a retraining run is recorded by the runner first, then this."""
        with self._tx(run_id) as db:
            db.execute("UPDATE runs SET trigger=?, replaces=? WHERE run_id=?",
                       (json.dumps(trigger, default=str), replaces, run_id))

    def record_promotion(self, pipeline: str, served: str, *, candidate: str | None,
                         previous: str | None, promoted: bool, reason: str) -> None:
        """Record a promotion decision: ``served`` is the run served from now on (the
        candidate when it was promoted, else the run that stays)."""
        with self._tx() as db:
            db.execute("INSERT INTO promotions VALUES (?,?,?,?,?,?,?)",
                       (time.time(), pipeline, served, candidate, previous, int(promoted),
                        reason))

    # -- reading ---------------------------------------------------------------------------
    def cached(self, cache_key: str) -> tuple[str, str] | None:
        """(run_id, step) of a successful step with this key, or None."""
        row = self.db.execute("SELECT run_id, step FROM cache WHERE cache_key=?",
                              (cache_key,)).fetchone()
        return (row[0], row[1]) if row else None

    def artifacts(self, run_id: str, step: str) -> dict[str, dict[str, Any]]:
        """The manifests of a step's outputs in a run."""
        rows = self.db.execute("SELECT name, manifest FROM artifacts WHERE run_id=? AND step=?",
                               (run_id, step)).fetchall()
        try:
            return {name: manifest(name, text) for name, text in rows}
        except Damaged as err:
            raise self._unreadable(run_id, err) from None

    def run(self, run_id: str) -> RunRecord:
        """One run with its steps, artifacts and metrics; MlopsError if unknown or damaged.
        A part of an id that matches one run only finds it."""
        row = self.db.execute("SELECT run_id FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            matches = self.db.execute("SELECT run_id FROM runs WHERE run_id LIKE ?",
                                      (f"%{run_id}%",)).fetchall()
            if len(matches) == 1:
                return self.run(matches[0][0])
            raise MlopsError(f"no run `{run_id}` in {self.path}; `jupyter mlops runs` lists "
                             "them")
        try:
            return self._load(run_id)
        except Damaged as err:
            raise self._unreadable(run_id, err) from None

    def resume_command(self, run_id: str, pipeline_dir: str | Path | None = None) -> str:
        """The command that resumes run ``run_id`` of ``pipeline_dir``; without it, the
        folder is the one whose own store this is, else a placeholder. A store that is not
        the folder's own is named."""
        from ..pipeline.quoting import shell_word

        own = self.path.name == STORE_FILE and self.path.parent.name == STORE_DIR
        if pipeline_dir is None:
            pipeline_dir = self.path.parent.parent if own else "PIPELINE_DIR"
        words = [pipeline_dir, "--resume", run_id]
        if self.path.resolve() != default_store(pipeline_dir).resolve():
            words += ["--store", self.path]
        return "jupyter mlops run " + " ".join(shell_word(w) for w in words)

    def _unreadable(self, run_id: str, err: Damaged) -> MlopsError:
        return MlopsError(f"run {run_id} in {self.path} cannot be read: {err} (the store was "
                          "changed outside jupyter-mlops); other runs are not affected; run "
                          "the pipeline again for a new record")

    def _load(self, run_id: str) -> RunRecord:
        """The run ``run_id``, which exists; :class:`.storerows.Damaged` if a value of it is
        not what was written, so that one damaged row cannot stop the others being read."""
        cursor = self.db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,))
        columns = [d[0] for d in cursor.description]
        data = dict(zip(columns, cursor.fetchone(), strict=True))
        data["folder"] = self._folder(data["folder"])
        run = run_record(data)
        gone = runner_gone(run)
        if gone is not None:
            run.status = "interrupted"
            run.interrupted = f"{gone}; resume it with `{self.resume_command(run.run_id)}`"
        cursor = self.db.execute("SELECT * FROM steps WHERE run_id=? ORDER BY rowid",
                                 (run.run_id,))
        step_cols = [d[0] for d in cursor.description]
        for step_row in cursor.fetchall():
            step = dict(zip(step_cols, step_row, strict=True))
            outputs = self.db.execute("SELECT name, manifest FROM artifacts WHERE run_id=? AND "
                                      "step=?", (run.run_id, step["step"])).fetchall()
            run.steps.append(step_record(step, outputs))
        for name, value in self.db.execute(
                "SELECT name, value FROM metrics WHERE run_id=? ORDER BY rowid", (run.run_id,)):
            run.metrics[name] = number(value, f"the value of metric `{name}`")
        return run

    def runs(self, limit: int = 50) -> list[RunRecord]:
        """The latest runs, newest first, each with its metrics; ``served`` marks the run
        each pipeline serves (see :meth:`served_run`). A run whose record is damaged is
        listed with what could be read and ``unreadable`` saying why."""
        rows = self.db.execute("SELECT run_id FROM runs ORDER BY started DESC LIMIT ?",
                               (limit,)).fetchall()
        runs = []
        for (run_id,) in rows:
            try:
                runs.append(self._load(run_id))
            except Damaged as err:
                runs.append(self._placeholder(run_id, str(err)))
        served = {name: self.served_run(name) for name in {r.pipeline for r in runs}}
        for run in runs:
            run.served = served[run.pipeline] == run.run_id
        return runs

    def _placeholder(self, run_id: str, why: str) -> RunRecord:
        """A damaged run as far as its plain columns go."""
        row = self.db.execute("SELECT pipeline, spec_sha256, status, started, folder FROM runs "
                              "WHERE run_id=?", (run_id,)).fetchone()
        pipeline, spec_sha256, status, started, folder = row
        return RunRecord(run_id, str(pipeline), str(spec_sha256), str(status),
                         started if isinstance(started, (int, float)) else 0.0,
                         self._folder(folder), unreadable=why)

    def _stored(self, folder: Path) -> str:
        """A run folder as recorded: relative to :attr:`base` when inside it."""
        path = Path(folder).resolve()
        try:
            return path.relative_to(self.base).as_posix()
        except ValueError:
            return str(path)

    def _folder(self, stored: object) -> str:
        """A recorded run folder as a path: a relative one is under :attr:`base`."""
        text = str(stored)
        return text if Path(text).is_absolute() else str(self.base / text)

    def promotions(self, pipeline: str | None = None) -> list[Promotion]:
        """Promotion decisions, oldest first (of one pipeline, or all)."""
        query = "SELECT * FROM promotions"
        args: tuple[Any, ...] = ()
        if pipeline is not None:
            query, args = query + " WHERE pipeline=?", (pipeline,)
        cursor = self.db.execute(query + " ORDER BY decided, rowid", args)
        columns = [d[0] for d in cursor.description]
        decisions = []
        for row in cursor.fetchall():
            data = dict(zip(columns, row, strict=True))
            data["promoted"] = bool(data["promoted"])
            decisions.append(Promotion(**data))
        return decisions

    def served_run(self, pipeline: str | None = None) -> str | None:
        """The run to serve: the one the latest promotion decision left in service, else
        the latest succeeded run; None when there is neither. Two small queries: cheap
        enough for a running server to ask every few seconds."""
        where, args = ("WHERE pipeline=? ", (pipeline,)) if pipeline is not None else ("", ())
        row = self.db.execute(f"SELECT served FROM promotions {where}"
                              "ORDER BY decided DESC, rowid DESC LIMIT 1", args).fetchone()
        if row is not None:
            return str(row[0])
        where = "AND pipeline=? " if pipeline is not None else ""
        row = self.db.execute(f"SELECT run_id FROM runs WHERE status='succeeded' {where}"
                              "ORDER BY started DESC LIMIT 1", args).fetchone()
        return None if row is None else str(row[0])


def _reason(err: BaseException) -> str:
    """What the system or SQLite said, without Python's decoration."""
    return (err.strerror if isinstance(err, OSError) and err.strerror else str(err)) or \
        type(err).__name__
