"""`jupyter mlops run` of the diabetes example (5 sequential steps) / `papermill` of the
original notebook, whole processes, same machine, same session. Target: ratio <= 1.10.

Also printed: the same run with each step's kernel started when the step starts (no kernel
pool), to show what starting kernels ahead saves.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _timing import report, wall

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"
#: `jupyter mlops run PIPELINE --force -j N --runs-dir RUNS` without the kernel pool.
WITHOUT_POOL = ("import sys; from jupyter_mlops.run.runner import run_pipeline; "
                "r = run_pipeline(sys.argv[1], runs_dir=sys.argv[2], jobs=int(sys.argv[3]), "
                "force=True, kernel_pool=False); sys.exit(r.status != 'succeeded')")


def without_pool(pipeline: Path, runs: str, jobs: int, repeat: int = 3) -> float:
    """Median wall time of a forced run of ``pipeline`` whose kernels start with their steps."""
    return wall([sys.executable, "-c", WITHOUT_POOL, str(pipeline), runs, str(jobs)], repeat)


def main(repeat: int = 3) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "diabetes"
        shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("*_pipeline"))
        notebook = work / "diabetes.ipynb"
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        wall([*cli, "export", str(notebook)], repeat=1)
        pipeline = work / "diabetes_pipeline"
        # --force: every repeat executes every step (no cache hits)
        ours = wall([*cli, "run", str(pipeline), "-j", "1", "--force", "--runs-dir",
                     f"{tmp}/runs"], repeat)
        theirs = wall([sys.executable, "-m", "papermill", str(notebook), f"{tmp}/out.ipynb",
                       "--cwd", str(work), "--no-progress-bar"], repeat)
        unpooled = without_pool(pipeline, f"{tmp}/runs", 1, repeat)
    report("run of 5 sequential steps", ours, theirs, "papermill of the notebook", 1.10)
    print(f"  without the kernel pool: {unpooled:.2f} s, ratio {unpooled / theirs:.2f}")


if __name__ == "__main__":
    main()
