"""`papermill --engine mlops` / plain nbclient and / papermill's default engine, on notebooks
of N trivial cells (``x_i = x_{i-1} + i``), whole processes, same machine, same session.

papermill's default engine rewrites the whole output notebook after every cell, so its time
grows with the square of N; ours writes on a backoff (1 s doubling to 30 s) and should stay
close to nbclient alone. Medians of 3 runs, except papermill's default engine at 1,000 cells:
one run, since it takes minutes. Prints only.

    python benchmarks/bench_engine.py [--sizes 200 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from _timing import wall

NBCLIENT = ("import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], as_version=4); "
            "nbclient.NotebookClient(nb, kernel_name='python3').execute(); "
            "nbformat.write(nb, sys.argv[2])")
SLOW_DEFAULT = 1000  # from this many cells papermill's default engine is timed once


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
    """Time the three ways to execute a notebook of ``cells`` cells and print the ratios."""
    notebook = str(trivial_notebook(tmp / f"trivial_{cells}.ipynb", cells))
    papermill = [sys.executable, "-m", "papermill", "--no-progress-bar", notebook]
    ours = wall([*papermill, str(tmp / "ours.ipynb"), "--engine", "mlops"], repeat)
    plain = wall([sys.executable, "-c", NBCLIENT, notebook, str(tmp / "nbclient.ipynb")], repeat)
    default_repeat = 1 if cells >= SLOW_DEFAULT else repeat
    default = wall([*papermill, str(tmp / "default.ipynb")], default_repeat)
    runs = f"median of {repeat}"
    default_runs = runs if default_repeat == repeat else "1 run: it takes minutes"
    print(f"{cells} cells: papermill --engine mlops {ours:.2f} s ({runs}), "
          f"nbclient {plain:.2f} s ({runs}), papermill default {default:.2f} s "
          f"({default_runs}); ours/nbclient {ours / plain:.2f}, "
          f"ours/papermill {ours / default:.2f}", flush=True)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark for each size asked for."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        for cells in args.sizes:
            measure(cells, args.repeat, Path(tmp))


if __name__ == "__main__":
    main()
