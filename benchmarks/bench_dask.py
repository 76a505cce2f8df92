"""Dask with 2 process workers against the local executor (`-j 1` and `-j 2`), whole
processes, forced runs, on three pipelines: the churn example (two independent training
branches after three shared steps, one light, one heavy), one of two heavy branches
(generated: a data step, then two forests of about 3 s each fitted side by side, then a step
comparing them) and a wide one (8 independent steps of about 2 s of Python each,
generated). The cluster's start is not counted: it serves every run, as a real cluster
would, and stays up (idle) while the local runs are timed.

The sides run alternately, round by round (dask, -j 1, -j 2, then again), so that a change
in the machine's load falls on all alike. Printed: each one's median wall time, and the
ratios as the median and min-max of the per-round ratios with the load average. Needs
`distributed`.

Each timed run is a first run (no zygote kept warm: ``JUPYTER_MLOPS_KEEP_WARM=0`` for the
runs and the cluster alike), unless ``--warm``: then every side keeps its zygotes warm
between runs, as a user's re-runs do by default (the workers keep theirs too), after one
untimed run of each.

    python benchmarks/bench_dask.py [--repeat 3] [--only churn|branches|wide] [--warm]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# the user's own setting, before _timing sets 0 for first runs
USERS_KEEP_WARM = os.environ.get("JUPYTER_MLOPS_KEEP_WARM")

from _timing import medians_line, ratio_line, rounds, timed, walls  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "churn"
CLUSTER = ("import sys\nfrom distributed import LocalCluster\n"
           "c = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, "
           "host='127.0.0.1', dashboard_address=None)\n"
           "print(c.scheduler_address, flush=True)\nsys.stdin.read()\nc.close()\n")


WIDE_STEP = ("%%mlops step s{n}\n"
             "total = 0\n"
             "for i in range({loops}):\n"
             "    total += i * i % 7\n"
             "r{n} = total")


def _wide(folder: Path, loops: int) -> Path:
    """A notebook of 8 independent steps, each ``loops`` turns of a Python loop."""
    cells = ["%load_ext jupyter_mlops"] + [WIDE_STEP.format(n=n, loops=loops)
                                          for n in range(8)]
    return _notebook(folder, "wide", cells)


BRANCHES = [
    "%load_ext jupyter_mlops",
    "%%mlops setup\nfrom sklearn.datasets import make_classification\n"
    "from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier",
    "%%mlops params\nn_samples = 20000\nrandom_state = 0",
    "%%mlops step data\n"
    "X, y = make_classification(n_samples=n_samples, n_features=20, random_state=random_state)\n"
    "X_train, y_train, X_test, y_test = X[:15000], y[:15000], X[15000:], y[15000:]",
    "%%mlops step forest\n"
    "forest = RandomForestClassifier(n_estimators=50, n_jobs=1, random_state=random_state)",
    "%%mlops model forest\nforest.fit(X_train, y_train)",
    "%%mlops step extra\n"
    "extra = ExtraTreesClassifier(n_estimators=150, n_jobs=1, random_state=random_state)",
    "%%mlops model extra\nextra.fit(X_train, y_train)",
    "%%mlops step compare\n"
    "forest_accuracy = float(forest.score(X_test, y_test))\n"
    "extra_accuracy = float(extra.score(X_test, y_test))",
    "%%mlops metrics forest_accuracy extra_accuracy\n"
    "{'forest_accuracy': forest_accuracy, 'extra_accuracy': extra_accuracy}",
]


def _notebook(folder: Path, name: str, cells: list[str]) -> Path:
    """Write ``cells`` as the notebook ``folder/name.ipynb``; return its path."""
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, str(folder / f"{name}.ipynb"))
    return folder / f"{name}.ipynb"


def _loops_for(seconds: float) -> int:
    """How many turns of the wide step's loop take about ``seconds`` here, run as a cell runs
    it (at top level, its names global)."""
    import time

    code = compile(WIDE_STEP.format(n=0, loops=1_000_000).split("\n", 1)[1], "<cell>", "exec")
    start = time.perf_counter()
    exec(code, {})
    return int(1_000_000 * seconds / (time.perf_counter() - start))


def _compare(name: str, pipeline: str, address: str, tmp: str, repeat: int,
             warm: bool) -> None:
    """Time dask, -j 1 and -j 2 alternately on ``pipeline``; print the figures."""
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    run = [*cli, "run", pipeline, "--force"]
    sides = {
        "dask (2 workers)": [*run, "--executor", "dask", "--scheduler", address,
                             "--runs-dir", f"{tmp}/{name}-d"],
        "local -j 1": [*run, "-j", "1", "--runs-dir", f"{tmp}/{name}-1"],
        "local -j 2": [*run, "-j", "2", "--runs-dir", f"{tmp}/{name}-2"],
    }
    if warm:  # what the timed runs then find kept warm
        walls(sides, 1)
    times = walls(sides, repeat)
    print(f"{name}: {medians_line(times)}")
    for local in ("local -j 1", "local -j 2"):
        print("  " + ratio_line(f"dask / {local}", times["dask (2 workers)"], times[local]))


def main(argv: list[str] | None = None) -> None:
    """Time dask and the local executor alternately ``--repeat`` rounds; print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    parser.add_argument("--only", choices=["churn", "branches", "wide"], help="one pipeline only")
    parser.add_argument("--warm", action="store_true",
                        help="keep zygotes warm between runs, as by default (not first runs)")
    args = parser.parse_args(argv)
    if args.warm:  # the user's setting, or the default (_timing sets 0: first runs)
        os.environ.pop("JUPYTER_MLOPS_KEEP_WARM", None)
        if USERS_KEEP_WARM not in (None, "0"):
            os.environ["JUPYTER_MLOPS_KEEP_WARM"] = USERS_KEEP_WARM
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        pipelines = {}
        if args.only in (None, "churn"):
            work = Path(tmp) / "churn"
            shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
            timed([*cli, "export", str(work / "churn.ipynb")])
            pipelines["churn, two branches"] = str(work / "churn_pipeline")
        if args.only in (None, "branches"):
            notebook = _notebook(Path(tmp) / "branches", "branches", BRANCHES)
            timed([*cli, "export", str(notebook)])
            pipelines["two heavy branches of ~3 s"] = str(notebook.parent /
                                                          "branches_pipeline")
        if args.only in (None, "wide"):
            notebook = _wide(Path(tmp) / "wide", _loops_for(2.0))
            timed([*cli, "export", str(notebook)])
            pipelines["wide, 8 independent steps of ~2 s"] = str(notebook.parent /
                                                                 "wide_pipeline")
        cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            address = cluster.stdout.readline().strip()
            for index, (name, pipeline) in enumerate(pipelines.items()):
                _compare(name, pipeline, address, f"{tmp}/runs{index}", args.repeat, args.warm)
        finally:
            cluster.stdin.close()
            cluster.wait(timeout=60)
            cluster.stdout.close()
            _stop_keepers(tmp)


def _stop_keepers(tmp: str) -> None:
    """Stop the zygotes kept warm for the pipelines in ``tmp`` (``--warm``), gone with it."""
    from jupyter_mlops.execution import warm

    for path in warm.kept():
        state = warm.status(path)
        if state is not None and str(state["folder"]).startswith(os.path.realpath(tmp)):
            warm.stop(path)


if __name__ == "__main__":
    main()
