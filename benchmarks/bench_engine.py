"""`papermill --engine mlops` / plain nbclient and / papermill's default engine, on notebooks
of N trivial cells (``x_i = x_{i-1} + i``), whole processes, same machine, same session.

papermill's default engine rewrites the whole output notebook after every cell, so its time
grows with the square of N; ours writes on a backoff (1 s doubling to 30 s) and should stay
close to nbclient alone. The three are run alternately, round by round (ours, nbclient,
papermill's default, then again), so that a change in the machine's load falls on each of
them alike; at 1,000 cells and more papermill's default engine runs in the first round only,
since it takes minutes, and ours / it is that round's ratio. Printed: each side's median wall
time, and each ratio as the median and min-max of its per-round ratios with the load
average. Prints only.

    python benchmarks/bench_engine.py [--sizes 200 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from _timing import medians_line, ratio_line, rounds, walls

NBCLIENT = ("import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], as_version=4); "
            "nbclient.NotebookClient(nb, kernel_name='python3').execute(); "
            "nbformat.write(nb, sys.argv[2])")
SLOW_DEFAULT = 1000  # from this many cells papermill's default engine is timed once
OURS = "papermill --engine mlops"


def trivial_notebook(path: Path, cells: int) -> Path:
    """A notebook of ``cells`` code cells ``x_i = x_{i-1} + i``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x_0 = 0")]
    nb.cells += [nbformat.v4.new_code_cell(f"x_{i} = x_{i - 1} + {i}") for i in range(1, cells)]
    nbformat.write(nb, str(path))
    return path


def measure(cells: int, repeat: int, tmp: Path) -> None:
    """Time the three ways to execute a notebook of ``cells`` cells alternately, ``repeat``
    rounds, and print the ratios."""
    notebook = str(trivial_notebook(tmp / f"trivial_{cells}.ipynb", cells))
    papermill = [sys.executable, "-m", "papermill", "--no-progress-bar", notebook]
    sides = {OURS: [*papermill, str(tmp / "ours.ipynb"), "--engine", "mlops"],
             "nbclient": [sys.executable, "-c", NBCLIENT, notebook, str(tmp / "nbclient.ipynb")],
             "papermill default": [*papermill, str(tmp / "default.ipynb")]}
    default_rounds = 1 if cells >= SLOW_DEFAULT else repeat
    times = walls(sides, default_rounds)
    rest = walls({k: v for k, v in sides.items() if k != "papermill default"},
                 repeat - default_rounds)
    for name, values in rest.items():
        times[name] += values
    note = "" if default_rounds == repeat else (
        f"; papermill default: {default_rounds} round, it takes minutes")
    print(f"{cells} cells, {repeat} rounds{note}: {medians_line(times)}")
    print("  " + ratio_line("--engine mlops / nbclient", times[OURS], times["nbclient"]))
    print("  " + ratio_line("--engine mlops / papermill default", times[OURS][:default_rounds],
                            times["papermill default"]), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark for each size asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for cells in args.sizes:
            measure(cells, args.repeat, Path(tmp))


if __name__ == "__main__":
    main()
