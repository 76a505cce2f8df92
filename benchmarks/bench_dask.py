"""Dask with 2 process workers on the churn example (two independent training branches) /
the local executor with `-j 1` on the same pipeline; whole processes, medians of 3.
The cluster's start is not counted: it serves every run, as a real cluster would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import wall

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "churn"
CLUSTER = ("import sys\nfrom distributed import LocalCluster\n"
           "c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, "
           "host='127.0.0.1', dashboard_address=None)\n"
           "print(c.scheduler_address, flush=True)\nsys.stdin.read()\nc.close()\n")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "churn"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        wall([*cli, "export", str(work / "churn.ipynb")], repeat=1)
        pipeline = str(work / "churn_pipeline")
        cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            address = cluster.stdout.readline().strip()
            ours = wall([*cli, "run", pipeline, "--force", "--executor", "dask",
                         "--scheduler", address, "--runs-dir", f"{tmp}/r1"])
        finally:
            cluster.stdin.close()
            cluster.wait(timeout=60)
            cluster.stdout.close()
        local = wall([*cli, "run", pipeline, "--force", "-j", "1", "--runs-dir", f"{tmp}/r2"])
    print(f"churn, two branches: dask (2 workers) {ours:.2f} s, local -j 1 {local:.2f} s, "
          f"ratio {ours / local:.2f}")


if __name__ == "__main__":
    main()
