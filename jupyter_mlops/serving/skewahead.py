"""A run's training/serving skew check, in a process that imported what it needs while the
run ran.

The check (:func:`.skew.after_run`) loads the run's model with skops, which imports
scikit-learn and scipy: 2.7-3.2 s on this project's 2-core machine (timed by hand), which every run
of a pipeline with prepare cells paid after its last step. :class:`CheckAhead` starts a
process with the run that imports them meanwhile, beside the steps' kernels, then checks the
run once told its id (churn with `-j 2`: 1.11 of papermill before, 0.92 after,
`benchmarks/bench_scale.py`).

Protocol: one JSON line in, ``{"pipeline": str, "run_id": str, "store": str or null}``; one
JSON line out, ``{"note": str or null}``, what :func:`.skew.after_run` returned. End of input
without a request (the run failed, or was stopped) ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

__all__ = ["CheckAhead", "ahead_of", "main"]


class CheckAhead:
    """The skew check of the run about to start, its imports begun now."""

    def __init__(self) -> None:
        """Start the process that imports what the check needs."""
        self.process: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlops.serving.skewahead"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def check(self, pipeline_dir: str | Path, run_id: str, store: str | Path | None = None
              ) -> str | None:
        """What :func:`.skew.after_run` says of ``run_id``, asked of the process (or, if it
        cannot answer, checked here)."""
        from .skew import after_run

        process, self.process = self.process, None
        # a re-run from the cache reuses its first run's check: no need to wait for imports
        reused = after_run(pipeline_dir, run_id, store, reuse_only=True)
        if reused is not None or process is None or process.stdin is None \
                or process.stdout is None:
            if process is not None:
                _end(process)
            return reused if reused is not None else after_run(pipeline_dir, run_id, store)
        request = {"pipeline": str(pipeline_dir), "run_id": run_id,
                   "store": None if store is None else str(store)}
        try:
            process.stdin.write(json.dumps(request) + "\n")
            process.stdin.close()
            answer = json.loads(process.stdout.readline())
            note = answer["note"]
        except (OSError, ValueError, KeyError, TypeError):  # it died: check here instead
            note = after_run(pipeline_dir, run_id, store)
        finally:
            _end(process)
        return note if isinstance(note, str) or note is None else str(note)

    def close(self) -> None:
        """End the process without a check (the run failed or was stopped)."""
        process, self.process = self.process, None
        if process is not None:
            _end(process)


def ahead_of(pipeline_dir: str | Path) -> CheckAhead | None:
    """A :class:`CheckAhead` for the run of ``pipeline_dir`` about to start, or None when it
    has no prepare cells (nothing to check) or cannot be read (the run says why)."""
    from ..errors import MlopsError
    from ..pipeline.spec import PipelineSpec

    try:
        if PipelineSpec.read(pipeline_dir).inference is None:
            return None
    except MlopsError:
        return None
    return CheckAhead()


def _end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # what was left unsent to a process that is gone
                pass


def main() -> None:
    """The process of :class:`CheckAhead`: import, then check the run it is told of."""
    from ..run.startup import skip_slow_optional_imports

    skip_slow_optional_imports()
    try:
        import pandas  # noqa: F401
        import skops.io  # noqa: F401 (scikit-learn and scipy with it)

        from . import model, skew  # noqa: F401
    except ImportError:  # the check says what is missing, in its own words
        pass
    line = sys.stdin.readline()
    if not line:
        return
    from .skew import after_run

    request = json.loads(line)
    # the check replays the notebook's setup cell, which may print: its output must not
    # come before the answer, so standard output is the answer's alone
    answer = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    note = after_run(request["pipeline"], request["run_id"], request["store"])
    answer.write(json.dumps({"note": note}) + "\n")
    answer.close()


if __name__ == "__main__":
    main()
