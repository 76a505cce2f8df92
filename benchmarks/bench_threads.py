"""Steps side by side with a thread per core in each kernel, against each kernel given its
share of the cores (what ``jupyter mlops run`` does where steps may run at once). A
generated notebook: a setup loading the iris data, then two independent steps, each a
leave-one-out cross-validation of a logistic regression (numpy's BLAS and scikit-learn's
OpenMP threads), then a step summing their scores. Whole processes, forced runs, first runs.

The sides run alternately, round by round: ``-j 2`` as it runs (shared cores), ``-j 2``
with every kernel told to use all cores (``OMP_NUM_THREADS`` and the like set to the core
count: the user's setting wins, so this is how it ran before), and ``-j 1``. Printed: each
one's median wall time and the ratios (median, min-max, load average).

    python benchmarks/bench_threads.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from _timing import medians_line, ratio_line, rounds, timed, walls

STEP = ("%%mlops step {name}\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from sklearn.model_selection import LeaveOneOut, cross_val_score\n"
        "{name} = float(cross_val_score(LogisticRegression(max_iter=1000), iris.data, "
        "iris.target, cv=LeaveOneOut()).mean())")
CELLS = ["%load_ext jupyter_mlops",
         "%%mlops setup\nfrom sklearn.datasets import load_iris\niris = load_iris()",
         STEP.format(name="a"), STEP.format(name="b"),
         "%%mlops step total\nscore = a + b"]
VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def main(argv: list[str] | None = None) -> None:
    """Time the three sides alternately ``--repeat`` rounds; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=5, help="rounds (default 5)")
    args = parser.parse_args(argv)
    for name in VARIABLES:
        os.environ.pop(name, None)
    import nbformat

    with tempfile.TemporaryDirectory() as tmp:
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c)
                                                   for c in CELLS])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        path = Path(tmp) / "cv.ipynb"
        nbformat.write(notebook, str(path))
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        timed([*cli, "export", str(path)])
        run = [*cli, "run", str(Path(tmp) / "cv_pipeline"), "--force"]
        every_core = [f"{name}={os.cpu_count() or 1}" for name in VARIABLES]
        sides = {
            "-j 2, cores shared": [*run, "-j", "2", "--runs-dir", f"{tmp}/shared"],
            "-j 2, a thread per core each": ["env", *every_core, *run, "-j", "2",
                                              "--runs-dir", f"{tmp}/every"],
            "-j 1": [*run, "-j", "1", "--runs-dir", f"{tmp}/one"],
        }
        times = walls(sides, args.repeat)
    print(f"two cross-validations side by side on {os.cpu_count()} cores: "
          f"{medians_line(times)}")
    for other in ("-j 2, a thread per core each", "-j 1"):
        print("  " + ratio_line(f"shared / {other}", times["-j 2, cores shared"],
                                times[other]))


if __name__ == "__main__":
    main()
