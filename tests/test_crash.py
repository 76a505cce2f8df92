"""Fault injection with real processes: SIGKILL a run (its runner, and its kernel) at many
moments; what it leaves behind must never be half-written: every manifest names a whole
file with its hash, the store passes `PRAGMA integrity_check` and every artifact it records
verifies, and the next run completes.

The kernels that jupyter_client starts are in their own session, so killing the runner's
process group does not reach them: each kill takes the runner's descendants (found in
/proc before the kill) and their process groups too.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.run.records import RunRecord
from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.runtime._files import sha256_file

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "jupyter_mlops.cli"]
STATUSES = {"running", "interrupted", "succeeded", "failed"}


# -- processes ---------------------------------------------------------------------------------

def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Runs:
    """Starts `jupyter mlops run` processes in their own sessions; kills whole trees."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: set[int] = set()

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([*CLI, "run", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes], runner_only: bool = False) -> list[int]:
        """SIGKILL the runner and (unless ``runner_only``) every process under it, kernels
        first; return the pids that were under it."""
        below = _descendants(proc.pid)
        self.pids.update(below)
        if not runner_only:
            self._kill_all(below)
        self._kill_all([proc.pid])
        proc.wait(timeout=30)
        return below

    def _kill_all(self, pids: list[int]) -> None:
        own = os.getpgrp()
        for pid in pids:
            try:
                group = os.getpgid(pid)
            except ProcessLookupError:
                group = None
            for send, target in ((os.kill, pid), (os.killpg, group)):
                if target is None or (send is os.killpg and target == own):
                    continue
                try:
                    send(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def cleanup(self) -> None:
        """Kill what is left: runners, and the kernels they orphaned."""
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)
        self._kill_all(sorted(self.pids))


@pytest.fixture
def runs() -> Iterator[Runs]:
    started = Runs()
    try:
        yield started
    finally:
        started.cleanup()


# -- what a kill may leave --------------------------------------------------------------------

def _manifests(folder: Path) -> list[Path]:
    return [p for p in folder.glob("*.json") if not p.name.startswith(".")
            and not p.name.endswith(".data.json") and p.name != "checks.json"]


def _verify_files(runs_dir: Path, strict: bool) -> int:
    """Every manifest under ``runs_dir`` is whole and names a whole file with its sha256;
    with ``strict``, no data file lacks its manifest either. The number of manifests."""
    count = 0
    for step in sorted(runs_dir.glob("*/artifacts/*")):
        named: set[str] = set()
        for path in _manifests(step):
            manifest = json.loads(path.read_text())  # never half-written
            # the final name, never a temporary one
            assert manifest["file"].startswith(f"{path.stem}."), path
            data = step / manifest["file"]
            assert data.is_file(), f"{path} names a missing file"
            assert sha256_file(data) == manifest["sha256"], f"{data} fails its hash"
            named.add(manifest["file"])
            count += 1
        if strict:
            data_files = {p.name for p in step.iterdir() if not p.name.startswith(".")
                          and (p.suffix != ".json" or p.name.endswith(".data.json"))}
            assert data_files <= named, f"{step}: files without a manifest"
    return count


def _verify_store(path: Path) -> list[RunRecord]:
    """The store passes sqlite's integrity check, reads back, and every artifact it records
    is a file whose sha256 is the recorded one. Its runs."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        db.close()
    store = RunStore(path)
    try:
        runs = store.runs(limit=1000)
    finally:
        store.close()
    for run in runs:
        assert run.status in STATUSES, run
        for step in run.steps:
            for name, manifest in step.outputs.items():
                data = Path(run.folder) / "artifacts" / step.step / manifest["file"]
                assert data.is_file(), f"the store records {name} of {run.run_id}, missing"
                assert sha256_file(data) == manifest["sha256"], f"{data} fails its hash"
    return runs


def _run_folder(runs_dir: Path, before: set[str], timeout: float = 30) -> Path:
    """The folder of the run that started after ``before`` was listed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [p for p in runs_dir.glob("*") if p.name not in before] \
            if runs_dir.is_dir() else []
        if new:
            return new[0]
        time.sleep(0.02)
    raise AssertionError("the run never started")


def _step_state(folder: Path, step: str) -> str | None:
    try:
        record = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return next(s["status"] for s in record["steps"] if s["name"] == step)


def _completes(pipeline: Path, *args: str) -> dict[str, Any]:
    done = run_cli("run", str(pipeline), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^Run (\S+) succeeded", done.stdout, re.M)
    assert match, done.stdout
    return json.loads((pipeline / "runs" / match.group(1) / "run.json").read_text())


def _names(runs_dir: Path) -> set[str]:
    return {p.name for p in runs_dir.glob("*")} if runs_dir.is_dir() else set()


# -- the tests ----------------------------------------------------------------------------------

def test_kill_the_runner_while_a_step_runs(tmp_path: Path, runs: Runs) -> None:
    nb = write_notebook(tmp_path / "slow.ipynb", "%%mlops setup\nimport time",
                        "%%mlops step first\ntotal = 1.0",
                        "%%mlops step slow\ntime.sleep(5)\nslow = total + 1",
                        "%%mlops step last\nfinal = slow * 2",
                        "%%mlops metrics\nresult = final")
    assert run_cli("export", str(nb)).returncode == 0
    pipeline = tmp_path / "slow_pipeline"
    runs_dir = pipeline / "runs"
    proc = runs.start(str(pipeline))
    folder = _run_folder(runs_dir, set())
    deadline = time.monotonic() + 60
    while _step_state(folder, "slow") != "running":
        assert proc.poll() is None and time.monotonic() < deadline, "slow never started"
        time.sleep(0.05)
    time.sleep(2)  # inside time.sleep(5)
    orphans = runs.kill(proc, runner_only=True)
    assert proc.returncode == -signal.SIGKILL
    assert orphans, "the runner had no kernel under it"
    runs.cleanup()  # the kernel it orphaned

    assert _verify_files(runs_dir, strict=True) == 1  # first's output, whole
    killed = {r.run_id: r.status for r in _verify_store(default_store(pipeline))}
    # its runner is gone: read as interrupted (the row itself still says running)
    assert killed.get(folder.name, "interrupted") == "interrupted"
    assert json.loads((folder / "run.json").read_text())["status"] == "running"

    after = _completes(pipeline)
    steps = {s["name"]: s for s in after["steps"]}
    # what the killed run finished is reused; what it did not finish runs
    if folder.name in killed:
        assert steps["first"]["cached_from"] == folder.name
    assert steps["slow"]["cached_from"] is None and steps["last"]["cached_from"] is None
    assert steps["last"]["outputs"]["result"]["value"] == 4.0
    _verify_files(runs_dir, strict=True)
    _verify_store(default_store(pipeline))


def test_kill_during_a_large_artifact_write(tmp_path: Path, runs: Runs) -> None:
    nb = write_notebook(tmp_path / "big.ipynb", "%%mlops setup\nimport numpy as np",
                        # 200 MB of float64
                        "%%mlops step big\narr = np.random.default_rng(0).random(25_000_000)",
                        "%%mlops step use\nfirst = float(arr[0])",
                        "%%mlops metrics\nresult = first * 2")
    assert run_cli("export", str(nb)).returncode == 0
    pipeline = tmp_path / "big_pipeline"
    runs_dir = pipeline / "runs"
    rng = random.Random(20240611)
    delays = [rng.uniform(0.0, 0.8) for _ in range(4)]  # the write, hash and manifest
    try:
        for attempt, delay in enumerate(delays):
            before = _names(runs_dir)
            proc = runs.start(str(pipeline), "--force")
            folder = _run_folder(runs_dir, before)
            big = folder / "artifacts" / "big"
            deadline = time.monotonic() + 60
            while not list(big.glob(".arr.npy.*")):  # the kernel is writing the array
                assert proc.poll() is None and time.monotonic() < deadline, \
                    f"attempt {attempt}: the array was never written"
                time.sleep(0.01)
            time.sleep(delay)
            runs.kill(proc)
            where = f"attempt {attempt}, killed {delay:.2f} s into the write"
            try:
                _verify_files(runs_dir, strict=False)
                _verify_store(default_store(pipeline))
            except AssertionError as err:
                raise AssertionError(f"{where}: {err}") from err
            # a temporary file may remain, but no manifest may name it
            for path in _manifests(big):
                assert json.loads(path.read_text())["file"] == "arr.npy", where
        after = _completes(pipeline)
        assert {s["name"]: s["status"] for s in after["steps"]} == {"big": "done", "use": "done"}
        _verify_files(runs_dir, strict=False)
        _verify_store(default_store(pipeline))
    finally:  # 200 MB per attempt
        for path in runs_dir.glob("*/artifacts/big/*arr.npy*"):
            path.unlink()


def test_kill_at_every_moment_of_a_run(tmp_path: Path, runs: Runs) -> None:
    # Each step sleeps 0.75 s so a run lasts at least 1.5 s by its own work, whatever
    # the runner's speed: the kills below, at most 0.25 s apart, land five times or more
    # inside it, through the kernels' start, both steps and the record's writing.
    nb = write_notebook(tmp_path / "quick.ipynb", "%%mlops params\nn = 3",
                        "%%mlops step a\nimport time\ntime.sleep(0.75)\ntotal = float(n)",
                        "%%mlops step b\nimport time\ntime.sleep(0.75)\ndoubled = total * 2",
                        "%%mlops metrics\nresult = doubled")
    assert run_cli("export", str(nb)).returncode == 0
    pipeline = tmp_path / "quick_pipeline"
    runs_dir = pipeline / "runs"
    start = time.monotonic()
    _completes(pipeline)
    lifetime = time.monotonic() - start
    step = min(0.25, max(0.1, lifetime / 15))
    for attempt in range(1, 16):
        delay = attempt * step
        proc = runs.start(str(pipeline), "--force")
        time.sleep(delay)
        if proc.poll() is not None:
            assert proc.returncode == 0
            break
        runs.kill(proc)
        try:
            _verify_files(runs_dir, strict=False)
            _verify_store(default_store(pipeline))
        except AssertionError as err:
            raise AssertionError(f"killed {delay:.1f} s into the run: {err}") from err
    assert attempt >= 5, f"a run took {lifetime:.1f} s: too few kills landed inside one"
    after = _completes(pipeline)
    assert {s["name"]: s["status"] for s in after["steps"]} == {"a": "done", "b": "done"}
    assert after["steps"][-1]["outputs"]["result"]["value"] == 6.0
    runs_recorded = _verify_store(default_store(pipeline))
    assert len(runs_recorded) >= attempt
