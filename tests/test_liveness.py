"""Dead runs do not look alive: a run records its runner (pid, host, process start time) and a
heartbeat; a run recorded `running` whose runner is gone reads `interrupted`, with the figures
and the command that resumes it; SIGTERM (and a cancel from JupyterLab, which is one) finishes
the record as `cancelled` before the runner exits.

Real processes throughout: `jupyter mlops run` on a small exported pipeline whose middle step
waits while a file HOLD exists, killed or terminated once the store and run.json say it runs.
Every wait polls observable state (the store, run.json, the process table) with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.lab.launches import LabJobs
from jupyter_mlops.lab.view import run_history
from jupyter_mlops.run.heartbeat import Heartbeat
from jupyter_mlops.run.liveness import HEARTBEAT_INTERVAL, STALE_AFTER
from jupyter_mlops.run.records import Runner, RunRecord
from jupyter_mlops.run.results import new_run_id
from jupyter_mlops.run.store import RunStore, default_store

HOST = socket.gethostname()


# -- waiting on what can be seen ------------------------------------------------------------

def _until(what: str, check: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _record(store_path: Path, run_id: str) -> RunRecord:
    store = RunStore(store_path)
    try:
        return store.run(run_id)
    finally:
        store.close()


def _stored_status(store_path: Path, run_id: str) -> str:
    """The status column as written, without the store's reading of it."""
    db = sqlite3.connect(store_path)
    try:
        return db.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()[0]
    finally:
        db.close()


def _run_json(pipeline: Path, run_id: str) -> dict[str, Any]:
    return json.loads((pipeline / "runs" / run_id / "run.json").read_text(encoding="utf-8"))


def _slow_step_runs(pipeline: Path, proc: subprocess.Popen[bytes]) -> str:
    """The id of the run ``proc`` started, once the store records it running and its
    run.json has step `slow` running."""
    path = default_store(pipeline)

    def running() -> str | None:
        assert proc.poll() is None, f"the runner exited ({proc.returncode}) before `slow` ran"
        if not path.is_file():
            return None
        db = sqlite3.connect(path, timeout=30)
        try:
            row = db.execute("SELECT run_id FROM runs WHERE status='running' "
                             "ORDER BY started DESC LIMIT 1").fetchone()
        except sqlite3.OperationalError:  # the runner is still making the schema
            return None
        finally:
            db.close()
        if row is None:
            return None
        try:
            steps = _run_json(pipeline, row[0])["steps"]
        except (OSError, ValueError):
            return None
        return row[0] if any(s["name"] == "slow" and s["status"] == "running"
                             for s in steps) else None

    return _until("step `slow` to run", running)


# -- processes --------------------------------------------------------------------------------

class Processes:
    """The processes a test starts, and everything they start; all killed at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.started: list[subprocess.Popen[bytes]] = []
        self.below: list[psutil.Process] = []

    def start(self, *command: str) -> subprocess.Popen[bytes]:
        count = len(self.started)
        with open(self.folder / f"out-{count}.log", "wb") as out, \
                open(self.folder / f"err-{count}.log", "wb") as err:
            proc = subprocess.Popen([sys.executable, "-m", *command], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append(proc)
        return proc

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.started.index(proc)
        return (self.folder / f"err-{index}.log").read_text(encoding="utf-8", errors="replace")

    def descendants(self, proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
        """The processes under ``proc`` now (its kernels); remembered for the cleanup."""
        try:
            found = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            found = []
        self.below += found
        return found

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the runner alone, as a crash would, then what it leaves behind."""
        below = self.descendants(proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        _kill(below)

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                self.descendants(proc)
                proc.kill()
            proc.wait(timeout=30)
        _kill(self.below)


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()  # psutil checks the pid is still this process
        except psutil.Error:
            pass


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A pipeline whose step `slow` waits while HOLD exists beside it (at most 5 minutes)."""
    nb = write_notebook(tmp_path / "live.ipynb", "%%mlops setup\nimport os\nimport time",
                        "%%mlops step first\ntotal = 1.0",
                        "%%mlops step slow\ndeadline = time.time() + 300\n"
                        "while os.path.exists('HOLD') and time.time() < deadline:\n"
                        "    time.sleep(0.1)\nslow = total + 1",
                        "%%mlops step last\nfinal = slow * 2",
                        "%%mlops metrics\nresult = final")
    done = run_cli("export", str(nb))
    assert done.returncode == 0, done.stderr
    return tmp_path / "live_pipeline"


def _ageless(text: str | None) -> str | None:
    """``text`` without the ages in it, which grow between two readings."""
    return None if text is None else re.sub(r"\d+ (s|min|h|d) ago", "N ago", text)


def _resume_hint(pipeline: Path, run_id: str) -> str:
    return f"`jupyter mlops run {pipeline} --resume {run_id}`"


# -- (a) SIGKILL: interrupted, and resumed ----------------------------------------------------

@pytest.mark.kernel
def test_a_killed_runner_reads_interrupted_everywhere_and_resumes(
        pipeline: Path, procs: Processes) -> None:
    hold = pipeline.parent / "HOLD"
    hold.write_text("")
    store_path = default_store(pipeline)
    proc = procs.start("jupyter_mlops.cli", "run", str(pipeline))
    run_id = _slow_step_runs(pipeline, proc)

    run = _record(store_path, run_id)
    assert run.status == "running" and run.interrupted is None
    assert (run.runner_pid, run.runner_host) == (proc.pid, HOST)
    assert abs(run.runner_started - psutil.Process(proc.pid).create_time()) < 1
    # the runner renews its heartbeat while the step runs
    first_beat = run.heartbeat
    _until("a heartbeat", lambda: _record(store_path, run_id).heartbeat > first_beat,
           timeout=4 * HEARTBEAT_INTERVAL + 10)

    procs.kill(proc)
    assert proc.returncode == -signal.SIGKILL

    run = _record(store_path, run_id)
    assert run.status == "interrupted"
    assert run.interrupted.startswith(f"runner pid {proc.pid} on host {HOST} is gone "
                                      "(last heartbeat "), run.interrupted
    assert run.interrupted.endswith(f"resume it with {_resume_hint(pipeline, run_id)}")
    # read so, not written so: the row keeps what the runner wrote
    assert _stored_status(store_path, run_id) == "running"

    table = run_cli("runs", "-C", str(pipeline))
    assert table.returncode == 0, table.stderr
    assert re.search(rf"^{run_id}\s+interrupted\s", table.stdout, re.M), table.stdout
    assert re.search(rf"^\s+interrupted: runner pid {proc.pid} on host .* is gone .*"
                     rf"--resume {run_id}`$", table.stdout, re.M), table.stdout
    listed = json.loads(run_cli("runs", "-C", str(pipeline), "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "interrupted")]
    assert _ageless(listed[0]["interrupted"]) == _ageless(run.interrupted)
    assert listed[0]["runner_pid"] == proc.pid
    shown = run_cli("runs", "-C", str(pipeline), "show", run_id).stdout
    assert f"Run {run_id} of `live`: interrupted" in shown
    assert f"  interrupted: runner pid {proc.pid}" in shown

    served = run_cli("serve", run_id, "-C", str(pipeline), "--port", "0", timeout=120)
    assert served.returncode == 2 and "Traceback" not in served.stderr, served.stderr
    assert f"run {run_id} interrupted; serve or monitor a run that succeeded" in served.stderr

    # the sidebar, as a server that did not start the run (a restarted one) reads it
    jobs = LabJobs()
    history = run_history(pipeline, jobs)
    assert [(h["run_id"], h["status"]) for h in history] == [(run_id, "interrupted")]
    assert _ageless(history[0]["error"]) == _ageless(run.interrupted)
    status = jobs.status(pipeline, run_id)
    assert status["status"] == "interrupted"
    assert _ageless(status["error"]) == _ageless(run.interrupted)

    hold.unlink()
    resumed = run_cli("run", str(pipeline), "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    run = _record(store_path, run_id)
    assert run.status == "succeeded" and run.interrupted is None
    assert run.runner_pid not in (None, proc.pid)
    assert run.metrics == {"result": 4.0}
    assert _run_json(pipeline, run_id)["status"] == "succeeded"


# -- (b) SIGTERM: cancelled, from the CLI and from JupyterLab's run process ------------------

@pytest.mark.kernel
def test_sigterm_records_the_run_cancelled_before_the_runner_exits(
        pipeline: Path, procs: Processes) -> None:
    (pipeline.parent / "HOLD").write_text("")
    store_path = default_store(pipeline)
    proc = procs.start("jupyter_mlops.cli", "run", str(pipeline))
    run_id = _slow_step_runs(pipeline, proc)
    kernels = procs.descendants(proc)
    assert kernels, "the runner has no kernel under it"

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1
    stderr = procs.stderr(proc)
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert last == (f"jupyter mlops: cancelled by SIGTERM; resume it with "
                    f"{_resume_hint(pipeline, run_id)}"), stderr

    run = _record(store_path, run_id)
    assert (run.status, run.ended is not None) == ("cancelled", True)
    assert run.error.startswith("cancelled by SIGTERM; resume it with")
    assert _stored_status(store_path, run_id) == "cancelled"
    record = _run_json(pipeline, run_id)
    assert record["status"] == "cancelled" and record["error"] == run.error
    # its kernels were stopped, not left to wait for the step's file
    _until("the kernels to end", lambda: not any(_alive(k) for k in kernels), timeout=30)


@pytest.mark.kernel
def test_sigterm_to_a_jupyterlab_run_records_it_cancelled_without_the_server(
        pipeline: Path, procs: Processes) -> None:
    """The sidebar's cancel is a SIGTERM to this process; no server is there to correct its
    record afterwards, as after a server restart."""
    (pipeline.parent / "HOLD").write_text("")
    run_id = new_run_id()
    proc = procs.start("jupyter_mlops.lab.runprocess", str(pipeline), "--run-id", run_id)
    assert _slow_step_runs(pipeline, proc) == run_id

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 1
    run = _record(default_store(pipeline), run_id)
    assert run.status == "cancelled"
    assert run.error.startswith("cancelled from JupyterLab; resume it with")
    assert _run_json(pipeline, run_id)["status"] == "cancelled"
    history = run_history(pipeline, LabJobs())
    assert [(h["run_id"], h["status"]) for h in history] == [(run_id, "cancelled")]


# -- (c) the rule, on records of real processes -----------------------------------------------

def _start(store: RunStore, run_id: str, runner: Runner | None = None) -> None:
    store.runner = runner
    store.start_run(run_id, "pipe", "0" * 64, Path("/nowhere") / run_id, {}, {}, "test", ["a"])


def test_a_live_pid_with_another_start_time_is_a_reused_pid(tmp_path: Path) -> None:
    store = RunStore(default_store(tmp_path / "p"))
    try:
        me = Runner.this()
        _start(store, "mine", me)
        assert store.run("mine").status == "running"
        # this process's pid, but started 100 s before it: the runner was another process
        _start(store, "reused", Runner(me.pid, me.host, me.started - 100))
        run = store.run("reused")
        assert run.status == "interrupted"
        assert run.interrupted.startswith(f"runner pid {me.pid} on host {HOST} is gone: that "
                                          "pid is now another process, started "), \
            run.interrupted
        assert run.interrupted.endswith(
            f"resume it with `jupyter mlops run {tmp_path / 'p'} --resume reused`")
        assert {r.run_id: r.status for r in store.runs()} == {"mine": "running",
                                                               "reused": "interrupted"}
    finally:
        store.close()


def test_an_exited_runner_not_yet_reaped_is_gone(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        zombie = psutil.Process(child.pid)
        started = zombie.create_time()
        _until("the child to exit", lambda: zombie.status() == psutil.STATUS_ZOMBIE, 30)
        store = RunStore(tmp_path / "store.sqlite")
        try:
            _start(store, "z", Runner(child.pid, HOST, started))
            run = store.run("z")
        finally:
            store.close()
    finally:
        child.wait()
    assert run.status == "interrupted"
    assert run.interrupted.startswith(f"runner pid {child.pid} on host {HOST} has exited")
    # not this folder's own store: the command names it, and leaves the folder to the reader
    assert run.interrupted.endswith(
        f"`jupyter mlops run PIPELINE_DIR --resume z --store {tmp_path / 'store.sqlite'}`")


def test_a_runner_on_another_host_is_judged_by_its_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    try:
        me = Runner.this()
        _start(store, "far", Runner(me.pid + 1, "elsewhere.example", me.started))
        assert store.run("far").status == "running"  # its pid means nothing here
        db = sqlite3.connect(path)
        try:  # as its runner would leave it had it gone ten minutes ago
            with db:
                db.execute("UPDATE runs SET heartbeat=? WHERE run_id='far'",
                           (time.time() - STALE_AFTER + 5,))
            assert store.run("far").status == "running"
            with db:
                db.execute("UPDATE runs SET heartbeat=? WHERE run_id='far'",
                           (time.time() - 600,))
        finally:
            db.close()
        run = store.run("far")
        assert run.status == "interrupted"
        assert run.interrupted.startswith(
            f"runner pid {me.pid + 1} on host elsewhere.example sent no heartbeat for 10 min "
            f"(a runner on another host is taken for gone after {STALE_AFTER:.0f} s)")
    finally:
        store.close()


def test_the_heartbeat_is_renewed_until_stopped_and_only_while_running(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    try:
        _start(store, "beating")
        first = store.run("beating").heartbeat
        beat = Heartbeat(path, "beating", interval=0.05).start()
        try:
            _until("a heartbeat", lambda: store.run("beating").heartbeat > first, 30)
        finally:
            beat.stop()
        assert not beat.thread.is_alive()
        store.finish_run("beating", "succeeded", None)
        last = store.run("beating").heartbeat
        store.beat("beating")  # a late beat does not touch a run that has ended
        assert store.run("beating").heartbeat == last
    finally:
        store.close()


def test_a_run_whose_runner_lives_cannot_be_resumed(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "store.sqlite")
    try:
        _start(store, "alive")  # by this process, which is alive
        with pytest.raises(MlopsError, match=r"run alive is still running \(runner pid "
                           rf"{os.getpid()} on host .*\); wait for it to end"):
            store.reopen_run("alive")
        me = Runner.this()
        _start(store, "dead", Runner(me.pid, me.host, me.started - 100))
        store.reopen_run("dead")  # interrupted: taken over by this process
        run = store.run("dead")
        assert (run.status, run.runner_started) == ("running", me.started)
    finally:
        store.close()


@pytest.mark.kernel
def test_resume_of_a_running_run_is_refused_in_one_line(pipeline: Path) -> None:
    store = RunStore(default_store(pipeline))
    try:
        store.start_run("20260101-000000-abcdef", "live", "0" * 64,
                        pipeline / "runs" / "20260101-000000-abcdef", {}, {}, "test",
                        ["first", "slow", "last"])
    finally:
        store.close()
    done = run_cli("run", str(pipeline), "--resume", "20260101-000000-abcdef")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "run 20260101-000000-abcdef is still running (runner pid" in lines[0]


# -- (d) a store made before these columns ----------------------------------------------------

#: The tables `runs` and `steps` as the previous jupyter-mlops made them (no runner columns).
_OLD_SCHEMA = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, spec_sha256 TEXT NOT NULL,
    status TEXT NOT NULL, started REAL NOT NULL, ended REAL, folder TEXT NOT NULL,
    parameters TEXT NOT NULL, environment TEXT NOT NULL, started_by TEXT NOT NULL,
    error TEXT, trigger TEXT, replaces TEXT
);
CREATE TABLE steps (
    run_id TEXT NOT NULL, step TEXT NOT NULL, status TEXT NOT NULL, started REAL,
    ended REAL, cache_key TEXT, cached_from TEXT, notebook TEXT, error TEXT,
    checks TEXT NOT NULL DEFAULT '[]', files TEXT NOT NULL DEFAULT '{}',
    inputs TEXT NOT NULL DEFAULT '{}', code_sha256 TEXT, parameters TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (run_id, step)
);
INSERT INTO runs VALUES ('20250101-000000-aaaaaa', 'old', '0', 'succeeded', 1.0, 2.0,
    '/r/a', '{"n": 1}', '{}', 'cli:me', NULL, NULL, NULL);
INSERT INTO runs VALUES ('20250102-000000-bbbbbb', 'old', '0', 'running', 3.0, NULL,
    '/r/b', '{}', '{}', 'cli:me', NULL, NULL, NULL);
INSERT INTO steps (run_id, step, status, started, ended) VALUES
    ('20250101-000000-aaaaaa', 'a', 'done', 1.0, 2.0);
"""


def test_a_store_of_the_previous_version_opens_and_lists(tmp_path: Path) -> None:
    path = default_store(tmp_path / "old_pipeline")
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(_OLD_SCHEMA)
    db.close()

    listed = run_cli("runs", "--store", str(path), "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    # a run recorded without its runner cannot be judged: it stays as recorded
    assert [(r["run_id"], r["status"], r["runner_pid"], r["interrupted"]) for r in runs] == [
        ("20250102-000000-bbbbbb", "running", None, None),
        ("20250101-000000-aaaaaa", "succeeded", None, None)]
    table = run_cli("runs", "--store", str(path))
    assert table.returncode == 0, table.stderr
    assert re.search(r"^20250101-000000-aaaaaa\s+succeeded\s", table.stdout, re.M)
    assert re.search(r"^20250102-000000-bbbbbb\s+running\s", table.stdout, re.M)

    db = sqlite3.connect(path)
    try:
        columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    finally:
        db.close()
    assert {"runner_pid", "runner_host", "runner_started", "heartbeat"} <= columns
    store = RunStore(path)  # and it records new runs, with their runner
    try:
        _start(store, "new")
        assert store.run("new").runner_pid == os.getpid()
        assert store.run("20250101-000000-aaaaaa").steps[0].status == "done"
    finally:
        store.close()
