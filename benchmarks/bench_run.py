"""`jupyter mlops run` of the diabetes example (5 sequential steps) / `papermill` of the
original notebook, whole processes, same machine, same session. Target: median ratio <= 1.10.

Also timed: the same run with each step's kernel started when the step starts (no kernel
pool), to show what starting kernels ahead saves.

The three are run alternately, round by round (run, papermill, run without the pool, then
again), so that a change in the machine's load falls on each of them alike. Printed: each
one's median wall time, and each ratio as the median and min-max of its per-round ratios
with the load average.

    python benchmarks/bench_run.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import medians_line, ratio_line, rounds, target_line, timed, walls

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"
#: `jupyter mlops run PIPELINE --force -j N --runs-dir RUNS` without the kernel pool.
WITHOUT_POOL = ("import sys; from jupyter_mlops.run.runner import run_pipeline; "
                "r = run_pipeline(sys.argv[1], runs_dir=sys.argv[2], jobs=int(sys.argv[3]), "
                "force=True, kernel_pool=False); sys.exit(r.status != 'succeeded')")


def without_pool(pipeline: Path, runs: str, jobs: int) -> list[str]:
    """The command of a forced run of ``pipeline`` whose kernels start with their steps."""
    return [sys.executable, "-c", WITHOUT_POOL, str(pipeline), runs, str(jobs)]


def main(argv: list[str] | None = None) -> None:
    """Time the three sides alternately ``--repeat`` rounds and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    repeat = parser.parse_args(argv).repeat
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "diabetes"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        notebook = work / "diabetes.ipynb"
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        timed([*cli, "export", str(notebook)])
        pipeline = work / "diabetes_pipeline"
        # --force: every round executes every step (no cache hits)
        times = walls({
            "run": [*cli, "run", str(pipeline), "-j", "1", "--force", "--runs-dir",
                    f"{tmp}/runs"],
            "papermill": [sys.executable, "-m", "papermill", str(notebook), f"{tmp}/out.ipynb",
                          "--cwd", str(work), "--no-progress-bar"],
            "run without the pool": without_pool(pipeline, f"{tmp}/runs", 1),
        }, repeat)
    print(f"diabetes example, 5 sequential steps, {medians_line(times)}")
    print("  " + target_line("run / papermill of the notebook", times["run"],
                             times["papermill"], 1.10))
    print("  " + ratio_line("run without the kernel pool / papermill",
                            times["run without the pool"], times["papermill"]))


if __name__ == "__main__":
    main()
