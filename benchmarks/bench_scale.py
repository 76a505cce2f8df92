"""The runner at scale, whole processes:

- a 1-step pipeline exported from a generated 1,000-cell notebook / nbclient executing that
  notebook directly (target: median ratio <= 1.2);
- the churn example (two independent training branches) with `-j 2` / `papermill` of the
  original notebook (target: median ratio <= 0.75).

Each is also timed without the kernel pool. The three sides of a benchmark are run
alternately, round by round (run, baseline, run without the pool, then again), so that a
change in the machine's load falls on each of them alike. Printed: each side's median wall
time, and each ratio as the median and min-max of its per-round ratios with the load average.

    python benchmarks/bench_scale.py [thousand_cells] [two_branches] [--repeat 3]

With no name, both run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _timing import medians_line, ratio_line, rounds, target_line, timed, walls
from bench_export import generated_notebook
from bench_run import without_pool

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NBCLIENT = ("import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], 4); "
            "nbclient.NotebookClient(nb, kernel_name='python3').execute()")
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def _print(title: str, times: dict[str, list[float]], baseline: str, target: float) -> None:
    print(f"{title}, {medians_line(times)}")
    print("  " + target_line(f"run / {baseline}", times["run"], times[baseline], target))
    print("  " + ratio_line(f"run without the kernel pool / {baseline}",
                            times["run without the pool"], times[baseline]))


def thousand_cells(tmp: Path, repeat: int = 3) -> None:
    """A 1-step run of a 1,000-cell notebook against nbclient executing it, ``repeat`` rounds."""
    notebook = generated_notebook(tmp / "flat.ipynb", marks=False)
    timed([*CLI, "export", str(notebook)])
    times = walls({
        "run": [*CLI, "run", str(tmp / "flat_pipeline"), "--force", "--runs-dir",
                str(tmp / "runs")],
        "nbclient": [sys.executable, "-c", NBCLIENT, str(notebook)],
        "run without the pool": without_pool(tmp / "flat_pipeline", str(tmp / "runs"), 1),
    }, repeat)
    _print("1-step run of 1,000 cells", times, "nbclient", 1.2)


def two_branches(tmp: Path, repeat: int = 3) -> None:
    """The churn example with `-j 2` against papermill of its notebook, ``repeat`` rounds."""
    work = tmp / "churn"
    shutil.copytree(EXAMPLES / "churn", work, ignore=shutil.ignore_patterns("*_pipeline"))
    notebook = work / "churn.ipynb"
    timed([*CLI, "export", str(notebook)])
    times = walls({
        "run": [*CLI, "run", str(work / "churn_pipeline"), "-j", "2", "--force",
                "--runs-dir", str(tmp / "runs2")],
        "papermill": [sys.executable, "-m", "papermill", str(notebook), str(tmp / "out.ipynb"),
                      "--cwd", str(work), "--no-progress-bar"],
        "run without the pool": without_pool(work / "churn_pipeline", str(tmp / "runs2"), 2),
    }, repeat)
    _print("churn (two branches) with -j 2", times, "papermill", 0.75)


BENCHES = {bench.__name__: bench for bench in (thousand_cells, two_branches)}


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks named (all by default), each ``--repeat`` rounds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", metavar="NAME",
                        help=f"{' or '.join(BENCHES)} (default: both)")
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only) - BENCHES.keys())
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, bench in BENCHES.items():
            if not args.only or name in args.only:
                bench(Path(tmp), args.repeat)


if __name__ == "__main__":
    main()
