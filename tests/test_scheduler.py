"""Jobs run on time: real `jupyter mlops scheduler` processes on a real store, real runs.

Each test exports a one-step pipeline, makes a job with `jupyter mlops schedule`, starts one
or two scheduler processes and reads what they recorded: the slots in the store, the runs
and their triggers, the alerts' command output and the requests a local HTTP server got.
Runs whose outputs are cached take ~0.3 s, so a 1-2 s interval leaves room on a loaded
2-core machine; timings are asserted as counts over windows, never as exact times.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import write_notebook

from jupyter_mlops.jobs.store import JobStore, Slot
from jupyter_mlops.run.store import RunStore, default_store

NOTEBOOK = (
    "%%mlops params\nsize = 3\nfail = False\nwait = 0.0",
    "%%mlops step make\nimport time\ntime.sleep(wait)\nif fail:\n"
    "    raise ValueError('asked to fail')\nvalues = list(range(size))",
)


def cli(*args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`jupyter mlops ARGS`, as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)
    if check:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """An exported one-step pipeline, run once so that runs with its defaults are cached."""
    notebook = write_notebook(tmp_path / "tiny.ipynb", *NOTEBOOK)
    cli("export", notebook, "-o", tmp_path / "pipe")
    cli("run", tmp_path / "pipe")
    return tmp_path / "pipe"


class Schedulers:
    """Scheduler processes started by a test, stopped (and their runs killed) after it."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        self.stores: list[Path] = []

    def start(self, *targets: Any, poll: float = 0.2) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlops.cli", "scheduler", *map(str, targets),
             "--poll", str(poll)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[str]) -> str:
        """SIGTERM, as systemd stops it; its log."""
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0, out
        return out

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate()
        for store in self.stores:  # runs still going after their scheduler: not ours to keep
            if store.is_file():
                for slot in slots(store):
                    if slot.pid and slot.outcome == "started":
                        try:
                            os.kill(slot.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass


@pytest.fixture
def schedulers() -> Iterator[Schedulers]:
    running = Schedulers()
    yield running
    running.close()


def slots(store: Path, job: str | None = None) -> list[Slot]:
    """Every slot recorded, oldest first."""
    jobs = JobStore(store)
    try:
        return sorted(jobs.slots(job, limit=10_000), key=lambda s: s.due)
    finally:
        jobs.close()


def scheduled_runs(store: Path, job: str) -> list[Any]:
    """The runs the store says job ``job`` started, oldest first."""
    runs = RunStore(store)
    try:
        found = [r for r in runs.runs(1000) if (r.trigger or {}).get("job") == job]
    finally:
        runs.close()
    return sorted(found, key=lambda r: r.started)


def wait_until(what: Callable[[], Any], timeout: float, message: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {message}")


def test_an_every_2s_job_runs_at_least_three_times_in_10_s(pipeline: Path,
                                                            schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "2s", "--name", "often")
    process = schedulers.start(pipeline)
    time.sleep(10)
    log = schedulers.stop(process)
    runs = scheduled_runs(store, "often")
    assert len(runs) >= 3, log
    for run in runs:
        assert run.started_by == "schedule:often"
        assert run.trigger["trigger"] == "schedule" and run.trigger["job"] == "often"
    started = [s for s in slots(store, "often") if s.run_id]
    assert {s.run_id for s in started} >= {r.run_id for r in runs if r.status != "running"}
    # each slot's run starts within a second of its due time on an idle machine; here only
    # that no slot waited a whole interval
    assert all(s.claimed - s.due < 2.0 for s in started), [s.to_json() for s in started]
    assert "job often: started run" in log


def test_a_paused_job_stops_and_a_resumed_one_goes_on(pipeline: Path,
                                                      schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "1s", "--name", "beat")
    schedulers.start(pipeline)
    wait_until(lambda: slots(store, "beat"), 10, "a first slot")
    assert "paused" in cli("jobs", "pause", "beat", "-C", pipeline).stdout
    time.sleep(1.5)  # a pass that began before the pause may still take a slot
    count = len(slots(store, "beat"))
    time.sleep(3)
    assert len(slots(store, "beat")) == count
    listed = json.loads(cli("jobs", "-C", pipeline, "--json").stdout)
    assert listed[0]["state"] == "paused" and listed[0]["next_run"] is None
    cli("jobs", "resume", "beat", "-C", pipeline)
    wait_until(lambda: len(slots(store, "beat")) > count, 10, "a slot after resuming")
    # slots missed while paused are not caught up: the first one after is a plain slot
    after = slots(store, "beat")[count]
    assert after.trigger == "schedule" and after.missed == 0


def test_a_run_longer_than_its_interval_is_skipped_not_doubled(pipeline: Path,
                                                               schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "1s", "--name", "slow", "-p", "wait=4")
    schedulers.start(pipeline)
    wait_until(lambda: sum(s.outcome == "skipped" for s in slots(store, "slow")) >= 2, 20,
               "two skipped slots")
    first = next(s for s in slots(store, "slow") if s.run_id)
    wait_until(lambda: next(s for s in slots(store, "slow") if s.due == first.due).outcome
               != "started", 30, "the long run's end")
    recorded = slots(store, "slow")
    skipped = [s for s in recorded if s.outcome == "skipped"]
    assert all(first.run_id in (s.reason or "") for s in skipped if s.due < first.due + 4)
    runs = scheduled_runs(store, "slow")
    # never two runs of the job at once
    for earlier, later in itertools.pairwise(runs):
        assert earlier.ended is not None and later.started >= earlier.ended - 0.05
    assert next(s for s in recorded if s.due == first.due).outcome == "succeeded"


def test_two_schedulers_on_one_store_start_each_slot_once(pipeline: Path,
                                                          schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "1s", "--name", "shared")
    first, second = schedulers.start(pipeline, poll=0.1), schedulers.start(pipeline, poll=0.1)
    time.sleep(7)
    logs = schedulers.stop(first) + schedulers.stop(second)
    # the last runs may still be going (the next scheduler would record their ends)
    started = [s for s in slots(store, "shared") if s.run_id]
    wait_until(lambda: len(scheduled_runs(store, "shared")) >= len(started), 20,
               "every started slot's run record")
    runs = scheduled_runs(store, "shared")
    assert len(started) >= 3, logs
    assert len(runs) == len(started), logs
    dues = [r.trigger["due"] for r in runs]
    assert len(dues) == len(set(dues)), "a slot was run twice"
    assert logs.count("started run") == len(started)


def test_after_downtime_a_missed_job_runs_once(pipeline: Path, schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "1s", "--name", "daily")
    process = schedulers.start(pipeline)
    wait_until(lambda: [s for s in slots(store, "daily") if s.outcome == "succeeded"], 15,
               "a first run")
    schedulers.stop(process)
    stopped = time.time()
    before = len(slots(store, "daily"))
    time.sleep(4.5)  # at least three slots go by with no scheduler
    restarted = time.time()
    schedulers.start(pipeline)
    wait_until(lambda: len(slots(store, "daily")) > before, 10, "a slot after the restart")
    time.sleep(1.5)
    new = slots(store, "daily")[before:]
    catch_up = new[0]
    assert catch_up.trigger == "catch-up" and catch_up.missed >= 2, catch_up
    # one run for the whole downtime, not one per slot missed
    assert sum(1 for s in new if stopped < s.due <= restarted) <= 1
    assert all(s.trigger == "schedule" for s in new[1:])
    run = next(r for r in scheduled_runs(store, "daily") if r.run_id == catch_up.run_id)
    assert run.trigger["trigger"] == "catch-up" and run.trigger["missed"] == catch_up.missed


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Hook,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


def test_a_failing_job_calls_its_command_and_its_webhook(
        pipeline: Path, schedulers: Schedulers, tmp_path: Path,
        webhook: tuple[str, list[dict[str, Any]]]) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    url, received = webhook
    said = tmp_path / "alert.txt"
    command = f'echo "$MLOPS_JOB|$MLOPS_RUN_ID|$MLOPS_STATUS|$MLOPS_ERROR" > {said}'
    cli("schedule", pipeline, "--every", "1s", "--name", "broken-model", "-p", "fail=True",
        "--on-failure", command, "--webhook", url)
    process = schedulers.start(pipeline)
    wait_until(lambda: received and said.is_file(), 20, "an alert")
    schedulers.stop(process)
    summary = received[0]
    assert summary["job"] == "broken-model" and summary["status"] == "failed"
    assert "asked to fail" in summary["error"] and summary["reasons"] == ["run failed"]
    job, run_id, status, error = said.read_text().strip().split("|", 3)
    assert (job, status) == ("broken-model", "failed") and "asked to fail" in error
    assert run_id == summary["run_id"]
    slot = next(s for s in slots(store, "broken-model") if s.run_id == run_id)
    assert slot.outcome == "failed"
    assert slot.alert == "run failed: command ran, webhook answered 200"
    assert "ValueError" in scheduled_runs(store, "broken-model")[0].error


def test_an_alert_that_cannot_be_sent_is_logged_and_recorded(pipeline: Path,
                                                              schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    with HTTPServer(("127.0.0.1", 0), _Hook) as closed:
        port = closed.server_address[1]  # nothing listens there once closed
    cli("schedule", pipeline, "--every", "1s", "--name", "loud", "--notify", "always",
        "--on-failure", "echo nope >&2; exit 3", "--webhook", f"http://127.0.0.1:{port}/")
    process = schedulers.start(pipeline)
    wait_until(lambda: [s for s in slots(store, "loud") if s.alert], 20, "an alert recorded")
    log = schedulers.stop(process)
    alert = next(s for s in slots(store, "loud") if s.alert).alert
    assert alert.startswith("run succeeded: command exited 3: nope, webhook failed:"), alert
    assert "job loud: alert: run succeeded: command exited 3" in log
    shown = cli("jobs", "show", "loud", "-C", pipeline).stdout
    assert "alert: run succeeded: command exited 3" in shown


def test_a_metric_condition_alerts_on_a_succeeded_run(tmp_path: Path) -> None:
    """The rule behind ``--alert-if``, on the summary the scheduler builds."""
    from jupyter_mlops.jobs.alerts import alert_reasons
    from jupyter_mlops.jobs.store import Job
    from jupyter_mlops.jobs.timing import Schedule

    job = Job("j", tmp_path, Schedule.of(every="1h"), alert_if=["r2<0.5", "mae>=10"])
    assert alert_reasons(job, {"status": "succeeded", "metrics": {"r2": 0.3, "mae": 9}}) == \
        ["metric r2 = 0.3 < 0.5"]
    assert alert_reasons(job, {"status": "succeeded", "metrics": {"r2": 0.9, "mae": 9}}) == []
    assert alert_reasons(job, {"status": "failed", "metrics": {}}) == ["run failed"]


def test_a_job_whose_pipeline_is_gone_is_broken_and_the_others_go_on(
        tmp_path: Path, schedulers: Schedulers) -> None:
    shared = tmp_path / "jobs.sqlite"
    schedulers.stores.append(shared)
    folders = []
    for name in ("gone", "kept"):
        notebook = write_notebook(tmp_path / f"{name}.ipynb", *NOTEBOOK)
        cli("export", notebook, "-o", tmp_path / name)
        cli("schedule", tmp_path / name, "--every", "1s", "--name", name, "--store", shared)
        folders.append(tmp_path / name)
    (folders[0] / "pipeline.yaml").unlink()
    process = schedulers.start("--store", shared)
    wait_until(lambda: len([s for s in slots(shared, "kept") if s.outcome == "succeeded"]) >= 2,
               30, "two runs of the other job")
    log = schedulers.stop(process)
    assert process.returncode == 0
    shown = cli("jobs", "show", "gone", "-C", folders[0], "--store", shared).stdout
    assert "job gone: broken" in shown and "pipeline.yaml" in shown
    assert "job gone is broken" in log and "jupyter mlops jobs resume gone" in log
    assert not slots(shared, "gone")


def test_a_locked_store_is_waited_for_and_the_scheduler_goes_on(pipeline: Path,
                                                                schedulers: Schedulers) -> None:
    store = default_store(pipeline)
    schedulers.stores.append(store)
    cli("schedule", pipeline, "--every", "1s", "--name", "patient")
    process = schedulers.start(pipeline)
    wait_until(lambda: slots(store, "patient"), 10, "a first slot")
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    time.sleep(4)
    holder.execute("COMMIT")
    holder.close()
    locked_until = time.time()
    assert process.poll() is None, "the scheduler died while the store was locked"
    wait_until(lambda: [s for s in slots(store, "patient") if s.claimed > locked_until], 10,
               "a slot after the lock")
    log = schedulers.stop(process)
    assert "trying again" in log and "Traceback" not in log


@pytest.mark.parametrize(("args", "message"), [
    (["--cron", "0 25 * * *"], "the hour field `25` is not valid"),
    (["--cron", "*/5 * * * * *"], "has 6 field(s); write five"),
    (["--cron", "0 2 * 13 *"], "the month field `13` is not valid"),
    (["--cron", "0 2 * * *", "--tz", "Mars/Olympus"], "unknown time zone `Mars/Olympus`"),
    (["--every", "0"], "an interval must be more than 0 seconds"),
    (["--every=-5m"], "an interval must be more than 0 seconds"),
    (["--every", "soon"], "`soon` is not an interval"),
    (["--every", "1h", "--tz", "UTC"], "a time zone goes with a cron expression"),
    (["--every", "1h", "-p", "nope=1"], "nope"),
    (["--every", "1h", "-p", "size=many"], "size"),
    (["--every", "1h", "--webhook", "file:///etc/passwd"], "is not an http(s) URL"),
    (["--every", "1h", "--alert-if", "accuracy is low"], "is not METRIC<VALUE"),
    (["--every", "1h", "--name", "../x"], "job name `../x` is not usable"),
])
def test_a_bad_schedule_is_one_line_and_exit_2(tmp_path: Path, args: list[str],
                                               message: str) -> None:
    notebook = write_notebook(tmp_path / "tiny.ipynb", *NOTEBOOK)
    cli("export", notebook, "-o", tmp_path / "pipe")
    done = cli("schedule", tmp_path / "pipe", *args, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not default_store(tmp_path / "pipe").is_file() or \
        not JobStore(default_store(tmp_path / "pipe")).jobs()


def test_jobs_commands_name_what_is_missing(pipeline: Path) -> None:
    cli("schedule", pipeline, "--cron", "0 2 * * *", "--tz", "Europe/Berlin", "--name", "n1")
    again = cli("schedule", pipeline, "--every", "1h", "--name", "n1", check=False)
    assert again.returncode == 2 and "a job named n1 exists already" in again.stderr
    missing = cli("jobs", "pause", "nope", "-C", pipeline, check=False)
    assert missing.returncode == 2 and "no job named nope" in missing.stderr
    assert "the jobs are n1" in missing.stderr
    assert cli("jobs", "frobnicate", "n1", "-C", pipeline, check=False).returncode == 2
    cli("jobs", "delete", "n1", "-C", pipeline)
    assert cli("jobs", "-C", pipeline).stdout.strip() == "no jobs"


def test_jobs_run_runs_now_and_records_it_as_manual(pipeline: Path) -> None:
    cli("schedule", pipeline, "--every", "1d", "--name", "later", "-p", "size=5")
    done = cli("jobs", "run", "later", "-C", pipeline)
    assert done.stdout.startswith("job later: run ") and "succeeded" in done.stdout
    run = scheduled_runs(default_store(pipeline), "later")[0]
    assert run.trigger["trigger"] == "manual" and run.parameters["size"] == 5
    listed = json.loads(cli("jobs", "-C", pipeline, "--json").stdout)[0]
    assert listed["last_runs"][0]["trigger"] == "manual"
    # a manual run does not move the schedule: the next run is still a day after making it
    assert listed["next_run"] - listed["created"] == pytest.approx(86400, abs=1)
    failed = cli("schedule", pipeline, "--every", "1d", "--name", "bad", "-p", "fail=True")
    assert failed.returncode == 0
    done = cli("jobs", "run", "bad", "-C", pipeline, check=False)
    assert done.returncode == 1 and "failed" in done.stdout and "asked to fail" in done.stdout
