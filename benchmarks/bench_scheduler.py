"""The embedded scheduler's cost and punctuality (figures only, no assertions).

1. Idle overhead: a `jupyter mlops scheduler` process watching one store with N jobs (default
   100; half cron, half interval, none due during the window) for W seconds: its CPU time
   over the window, as a share of one core (target: under 1%). Measured against the same
   process with no jobs, alternated (A B A B), so the share that the jobs cost is visible.
2. Lateness: K jobs every S seconds on a one-step pipeline whose outputs are cached, for W
   seconds: how late each slot's run process started after its due time (the slot's
   ``claimed - due``) and how late its run was recorded started (the run's ``started -
   due``), p50 and p99 (target: p99 under 1 s).

    python benchmarks/bench_scheduler.py [--jobs 100] [--window 30] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def _pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell("%%mlops params\nsize = 3"),
                      nbformat.v4.new_code_cell("%%mlops step make\nvalues = list(range(size))")]
    nbformat.write(notebook, str(folder / "tiny.ipynb"))
    subprocess.run([*CLI, "export", str(folder / "tiny.ipynb"), "-o", str(folder / "pipe")],
                   check=True, capture_output=True)
    subprocess.run([*CLI, "run", str(folder / "pipe")], check=True, capture_output=True)
    return folder / "pipe"


def _cpu_share(pipeline: Path, window: float) -> float:
    """CPU seconds per wall second of a scheduler process over ``window`` seconds."""
    import psutil

    process = subprocess.Popen([*CLI, "scheduler", str(pipeline)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    time.sleep(3)  # past its start-up imports
    watched = psutil.Process(process.pid)
    before, start = sum(watched.cpu_times()[:2]), time.monotonic()
    time.sleep(window)
    used, took = sum(watched.cpu_times()[:2]) - before, time.monotonic() - start
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    return used / took


def idle(base: Path, jobs: int, window: float, rounds: int) -> None:
    """Scheduler CPU with ``jobs`` jobs against none, alternated."""
    empty = _pipeline(base / "empty")
    busy = _pipeline(base / "busy")
    for index in range(jobs):
        when = ["--cron", f"{index % 60} 3 * * *", "--tz", "Europe/Berlin"] if index % 2 \
            else ["--every", f"{6 + index}h"]
        subprocess.run([*CLI, "schedule", str(busy), *when, "--name", f"job{index}"],
                       check=True, capture_output=True)
    shares: dict[str, list[float]] = {"jobs": [], "none": []}
    for _ in range(rounds):
        shares["jobs"].append(_cpu_share(busy, window))
        shares["none"].append(_cpu_share(empty, window))
    ours, theirs = statistics.median(shares["jobs"]), statistics.median(shares["none"])
    print(f"idle scheduler, {jobs} jobs: {100 * ours:.2f}% of a core (no jobs: "
          f"{100 * theirs:.2f}%), {window:.0f} s windows, {rounds} rounds "
          f"({'meets' if ours < 0.01 else 'misses'} target < 1%)")


def _percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.3f} s, p99 {p99:.3f} s, max {ordered[-1]:.3f} s"


def lateness(base: Path, jobs: int, every: float, window: float) -> None:
    """How late ``jobs`` jobs every ``every`` s start over ``window`` s."""
    from jupyter_mlops.errors import MlopsError
    from jupyter_mlops.jobs.store import JobStore
    from jupyter_mlops.run.store import default_store

    pipeline = _pipeline(base / f"late-{jobs}")
    for index in range(jobs):
        subprocess.run([*CLI, "schedule", str(pipeline), "--every", f"{every}s", "--name",
                        f"late{index}"], check=True, capture_output=True)
    process = subprocess.Popen([*CLI, "scheduler", str(pipeline), "--poll", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(window)
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    time.sleep(3)  # the last runs record their start
    store = JobStore(default_store(pipeline))
    try:
        slots = [s for s in store.slots(limit=100_000) if s.run_id]
        claimed = [s.claimed - s.due for s in slots]
        started = []
        for slot in slots:
            try:
                started.append(store.run(slot.run_id).started - slot.due)
            except MlopsError:  # a run killed before its record
                pass
        skipped = len(store.slots(limit=100_000)) - len(slots)
    finally:
        store.close()
    print(f"lateness, {jobs} job(s) every {every:g} s for {window:.0f} s: {len(slots)} runs, "
          f"{skipped} slots skipped")
    print(f"  run process started after due: {_percentiles(claimed)} "
          f"({'meets' if sorted(claimed)[round(0.99 * (len(claimed) - 1))] < 1 else 'misses'}"
          " target p99 < 1 s)")
    if started:
        print(f"  run recorded started after due: {_percentiles(started)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_MLOPS_SCHEDULES"] = str(Path(tmp) / "schedules.json")
        idle(Path(tmp), args.jobs, args.window, args.rounds)
        lateness(Path(tmp), 1, 1.0, args.window)
        lateness(Path(tmp), 5, 2.0, args.window)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
