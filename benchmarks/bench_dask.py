"""Dask with 2 process workers on the churn example (two independent training branches) /
the local executor with `-j 1` on the same pipeline; whole processes, forced runs.
The cluster's start is not counted: it serves every run, as a real cluster would, and stays
up (idle) while the local runs are timed.

The two are run alternately, round by round (dask, local, then again), so that a change in
the machine's load falls on both alike. Printed: each one's median wall time, and the ratio
as the median and min-max of the per-round ratios with the load average. Needs `distributed`.

    python benchmarks/bench_dask.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import medians_line, ratio_line, rounds, timed, walls

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "churn"
CLUSTER = ("import sys\nfrom distributed import LocalCluster\n"
           "c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, "
           "host='127.0.0.1', dashboard_address=None)\n"
           "print(c.scheduler_address, flush=True)\nsys.stdin.read()\nc.close()\n")


def main(argv: list[str] | None = None) -> None:
    """Time dask and the local executor alternately ``--repeat`` rounds; print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    repeat = parser.parse_args(argv).repeat
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "churn"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        timed([*cli, "export", str(work / "churn.ipynb")])
        pipeline = str(work / "churn_pipeline")
        cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            address = cluster.stdout.readline().strip()
            times = walls({
                "dask (2 workers)": [*cli, "run", pipeline, "--force", "--executor", "dask",
                                     "--scheduler", address, "--runs-dir", f"{tmp}/r1"],
                "local -j 1": [*cli, "run", pipeline, "--force", "-j", "1", "--runs-dir",
                               f"{tmp}/r2"],
            }, repeat)
        finally:
            cluster.stdin.close()
            cluster.wait(timeout=60)
            cluster.stdout.close()
    print(f"churn, two branches: {medians_line(times)}")
    print("  " + ratio_line("dask / local -j 1", times["dask (2 workers)"],
                            times["local -j 1"]))


if __name__ == "__main__":
    main()
