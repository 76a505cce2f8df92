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

    def __init__(self, pipeline_dir: str | Path) -> None:
        """Start the process that imports what the check needs, the imports of the
        pipeline's setup cells (which the check replays) included."""
        self.process: subprocess.Popen[str] | None = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlops.serving.skewahead", str(pipeline_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

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
    return CheckAhead(pipeline_dir)


def _end(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait()
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            try:
                stream.close()
            except OSError:  # what was left unsent to a process that is gone
                pass


def _installed(top: str) -> bool:
    """Whether top-level module ``top`` is installed (the standard library, site-packages),
    not the user's own (a helper beside the notebook, which a step may still be writing)."""
    import importlib.util
    import sysconfig

    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = list(spec.submodule_search_locations or [])
    if spec.origin not in (None, "built-in", "frozen"):
        places.append(spec.origin)
    roots = [os.path.realpath(p) for k, p in sysconfig.get_paths().items() if "lib" in k]
    return all(any(os.path.realpath(p).startswith(r.rstrip(os.sep) + os.sep) for r in roots)
               for p in places)


def _without_magics(code: str) -> str:
    """``code`` without its top-level ``get_ipython().…(…)`` calls (its magics), which the
    check's replay makes no-ops (:class:`.preparation._NoKernel`)."""
    import ast

    def magic(node: ast.stmt) -> bool:
        call = node.value if isinstance(node, ast.Expr) else None
        target = call.func.value if isinstance(call, ast.Call) and isinstance(
            call.func, ast.Attribute) else None
        return (isinstance(target, ast.Call) and isinstance(target.func, ast.Name)
                and target.func.id == "get_ipython")

    tree = ast.parse(code)
    tree.body = [node for node in tree.body if not magic(node)]
    return ast.unparse(tree)


def _import_setup(pipeline_dir: str) -> None:
    """Import what the pipeline's setup cells import before anything that could change an
    import (:func:`..execution.stepexec.source_plan`), up to the first module that is not
    installed (the user's own): the check replays those cells (churn's imports matplotlib:
    0.4 s)."""
    from ..execution.stepexec import source_plan
    from ..pipeline.spec import PipelineSpec

    try:
        setup = (PipelineSpec.read(pipeline_dir).inference or {}).get("setup") or []
        plan = source_plan([_without_magics(str(part.get("code", ""))) for part in setup])
    except Exception:  # the check itself says what is wrong with the pipeline
        return
    for name, names, _ in plan:
        if not _installed(name.partition(".")[0]):
            return  # the user's own module may set what later imports read: stop there
        try:
            __import__(name, fromlist=list(names))
        except Exception:  # replayed, the cell raises it in the check's own words
            return


def main() -> None:
    """The process of :class:`CheckAhead`: import, then check the run it is told of."""
    from ..run.startup import skip_slow_optional_imports

    # imports and the replayed setup cells may print: standard output is the answer's alone
    answer = os.fdopen(os.dup(1), "w")
    sys.stdout.flush()
    os.dup2(2, 1)
    skip_slow_optional_imports()
    try:
        import pandas  # noqa: F401
        import skops.io  # noqa: F401 (scikit-learn and scipy with it)

        from . import model, skew  # noqa: F401
    except ImportError:  # the check says what is missing, in its own words
        pass
    if len(sys.argv) > 1:
        _import_setup(sys.argv[1])
    line = sys.stdin.readline()
    if not line:
        return
    from .skew import after_run

    request = json.loads(line)
    note = after_run(request["pipeline"], request["run_id"], request["store"])
    answer.write(json.dumps({"note": note}) + "\n")
    answer.close()


if __name__ == "__main__":
    main()
