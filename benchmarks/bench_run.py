"""`jupyter mlops run` of the diabetes example (5 sequential steps) / `papermill` of the
original notebook, whole processes, same machine, same session. Target: ratio <= 1.10."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from _timing import report, wall

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "diabetes"


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
    report("run of 5 sequential steps", ours, theirs, "papermill of the notebook", 1.10)


if __name__ == "__main__":
    main()
