"""The runner at scale, whole processes, medians of 3:

- a 1-step pipeline exported from a generated 1,000-cell notebook / nbclient executing that
  notebook directly (target <= 1.2);
- the churn example (two independent training branches) with `-j 2` / `papermill` of the
  original notebook (target <= 0.75).

Each is also printed without the kernel pool. `python bench_scale.py two_branches` runs one.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _timing import report, wall
from bench_export import generated_notebook
from bench_run import without_pool

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NBCLIENT = ("import sys, nbformat, nbclient; nb = nbformat.read(sys.argv[1], 4); "
            "nbclient.NotebookClient(nb, kernel_name='python3').execute()")


def thousand_cells(tmp: Path) -> None:
    notebook = generated_notebook(tmp / "flat.ipynb", marks=False)
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    wall([*cli, "export", str(notebook)], repeat=1)
    ours = wall([*cli, "run", str(tmp / "flat_pipeline"), "--force", "--runs-dir",
                 str(tmp / "runs")])
    theirs = wall([sys.executable, "-c", NBCLIENT, str(notebook)])
    unpooled = without_pool(tmp / "flat_pipeline", str(tmp / "runs"), 1)
    report("1-step run of 1,000 cells", ours, theirs, "nbclient of the notebook", 1.2)
    print(f"  without the kernel pool: {unpooled:.2f} s, ratio {unpooled / theirs:.2f}")


def two_branches(tmp: Path) -> None:
    work = tmp / "churn"
    shutil.copytree(EXAMPLES / "churn", work, ignore=shutil.ignore_patterns("*_pipeline"))
    notebook = work / "churn.ipynb"
    cli = [sys.executable, "-m", "jupyter_mlops.cli"]
    wall([*cli, "export", str(notebook)], repeat=1)
    ours = wall([*cli, "run", str(work / "churn_pipeline"), "-j", "2", "--force",
                 "--runs-dir", str(tmp / "runs2")])
    theirs = wall([sys.executable, "-m", "papermill", str(notebook), str(tmp / "out.ipynb"),
                   "--cwd", str(work), "--no-progress-bar"])
    unpooled = without_pool(work / "churn_pipeline", str(tmp / "runs2"), 2)
    report("churn (two branches) with -j 2", ours, theirs, "papermill of the notebook", 0.75)
    print(f"  without the kernel pool: {unpooled:.2f} s, ratio {unpooled / theirs:.2f}")


def main() -> None:
    only = sys.argv[1:]  # `thousand_cells` or `two_branches` runs just that one
    with tempfile.TemporaryDirectory() as tmp:
        for bench in (thousand_cells, two_branches):
            if not only or bench.__name__ in only:
                bench(Path(tmp))


if __name__ == "__main__":
    main()
