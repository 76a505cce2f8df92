"""``export``, ``show``, ``run`` and ``test``: from a notebook to a pipeline, and running it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from .common import say


def add_commands(sub: Any) -> None:
    """Add this module's subcommands to the CLI's subparsers."""
    export = sub.add_parser("export", help="write a pipeline folder from a notebook",
                            description="Write a pipeline folder (pipeline.yaml, one notebook "
                            "per step, README.md) from a marked notebook.")
    export.add_argument("notebook", metavar="NOTEBOOK")
    export.add_argument("-o", "--output", metavar="DIR",
                        help="pipeline folder (default: <stem>_pipeline/ beside the notebook)")
    export.add_argument("--split", choices=["headings"],
                        help="start a step at each level-2 markdown heading")
    export.add_argument("--allow-pickle", action="store_true",
                        help="pass values of other types between steps with pickle (opt-in: "
                        "only load pickles you trust)")
    export.add_argument("--kernel", metavar="NAME",
                        help="the installed kernel the steps run in (default: the notebook's; "
                        "`jupyter kernelspec list` shows them)")
    export.add_argument("--trust", action="append", default=[], metavar="TYPE",
                        help="let a model file use this type (e.g. xgboost.XGBClassifier) "
                        "beyond scikit-learn, numpy and scipy's; repeat for more")
    export.set_defaults(handler=cmd_export)

    show = sub.add_parser("show", help="show the steps, data flow, parameters and problems",
                          description="Show what a notebook would export to, or what a "
                          "pipeline folder holds.")
    show.add_argument("target", metavar="NOTEBOOK|PIPELINE_DIR")
    show.add_argument("--json", action="store_true", help="print JSON (what the sidebar reads)")
    show.add_argument("--split", choices=["headings"],
                      help="start a step at each level-2 markdown heading")
    show.set_defaults(handler=cmd_show)

    run = sub.add_parser("run", help="run a pipeline folder with papermill",
                         description="Run a pipeline: steps in dependency order, independent "
                         "steps in parallel, each executed notebook kept in the run's folder.")
    run.add_argument("pipeline", metavar="PIPELINE_DIR")
    run.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                     help="set a pipeline parameter (repeatable)")
    run.add_argument("--runs-dir", metavar="DIR", help="where runs go (default: PIPELINE_DIR/runs)")
    run.add_argument("-j", "--jobs", type=int, metavar="N",
                     help="steps run at once (default: the number of cores)")
    run.add_argument("--cell-timeout", type=float, metavar="S",
                     help="fail a cell that runs longer than S seconds (whole seconds, rounded up)")
    run.add_argument("--store", metavar="PATH",
                     help="the run store (default: PIPELINE_DIR/.mlops/store.sqlite)")
    run.add_argument("--force", nargs="?", const="*", action="append", metavar="STEP",
                     help="run every step (or STEP, repeatable) even if unchanged")
    run.add_argument("--only", action="append", metavar="STEP",
                     help="run just STEP (repeatable); upstream results come from the store")
    run.add_argument("--from", dest="start", metavar="STEP",
                     help="run STEP and every step after it; upstream results from the store")
    run.add_argument("--resume", metavar="RUN_ID",
                     help="re-run the failed and unfinished steps of an earlier run")
    run.add_argument("--kernel", metavar="NAME",
                     help="run the steps in this installed kernel instead of the pipeline's "
                     "(`jupyter kernelspec list` shows them)")
    run.add_argument("--no-pool", dest="kernel_pool", action="store_false",
                     help="start each step's kernel when the step starts, not ahead of it")
    run.add_argument("--executor", default="local", metavar="NAME",
                     help="where step notebooks run: local (default) or dask (needs "
                     "jupyter-mlops[dask])")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="the Dask scheduler, e.g. tcp://127.0.0.1:8786")
    run.add_argument("--mlflow", metavar="URI",
                     help="mirror the run into MLflow at this tracking URI "
                     "(needs jupyter-mlops[mlflow])")
    run.add_argument("--fail-on-drift", action="store_true", default=None,
                     help="fail a step whose data drifted from what the notebook saw "
                     "(default: warn, or the pipeline's own setting)")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also say how each step's kernel was got (forked, or started "
                     "fresh and why)")
    run.set_defaults(handler=cmd_run)

    _add_warm(sub)

    test = sub.add_parser("test", help="run the tests generated for a pipeline",
                          description="Run the pytest tests that export generated from what "
                          "the notebook captured; extra arguments go to pytest.")
    test.add_argument("pipeline", metavar="PIPELINE_DIR")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS")
    test.set_defaults(handler=cmd_test)


def cmd_export(args: argparse.Namespace) -> int:
    """``jupyter mlops export``."""
    from ..pipeline.export import export

    result = export(args.notebook, args.output, split=args.split, allow_pickle=args.allow_pickle,
                    trust=args.trust, kernel=args.kernel)
    for warning in result.warnings:
        say(f"warning: {warning.message}")
    steps = ", ".join(s.name for s in result.spec.steps)
    print(f"Exported {Path(args.notebook).name} to {result.folder}/ "
          f"({len(result.spec.steps)} step{'' if len(result.spec.steps) == 1 else 's'}: "
          f"{steps})")
    print(f"Run it with: jupyter mlops run {result.folder}")
    return 0



def cmd_show(args: argparse.Namespace) -> int:
    """``jupyter mlops show``."""
    import json

    from ..pipeline.spec import PipelineSpec
    from ..run.report import describe, describe_json

    target = Path(args.target)
    if target.is_dir():
        spec, analysis = PipelineSpec.read(target), None
    else:
        from ..pipeline.export import plan

        analysis, spec = plan(target, split=args.split)
    if args.json:
        print(json.dumps(describe_json(spec, analysis), indent=1, default=str))
    else:
        print(describe(spec, analysis))
    return 2 if analysis is not None and analysis.errors else 0



def _add_warm(sub: Any) -> None:
    warm = sub.add_parser("warm", help="list (or stop) the processes keeping kernels' imports "
                          "warm between runs",
                          description="After a run, a process keeps what its kernels imported "
                          "for the next run of the same pipeline, for JUPYTER_MLOPS_KEEP_WARM "
                          "seconds (default 900; 0 keeps none). List them, or stop them.")
    warm.add_argument("--stop", action="store_true", help="stop them all")
    warm.set_defaults(handler=cmd_warm)


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"



def cmd_run(args: argparse.Namespace) -> int:
    """``jupyter mlops run``."""
    import logging

    from ..pipeline.freshness import stale_export
    from ..pipeline.spec import PipelineSpec
    from ..run.options import RunOptions
    from ..run.report import progress_printer, summary
    from ..run.runner import run_pipeline

    # Each failure is reported once, in our own words; papermill's log lines would repeat it.
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    if args.verbose:  # how each step's kernel was got (execution.kernelpool logs it)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("jupyter-mlops: %(message)s"))
        kernels = logging.getLogger("jupyter_mlops.kernels")
        kernels.addHandler(handler)
        kernels.setLevel(logging.DEBUG)
    spec = PipelineSpec.read(args.pipeline)
    printer = progress_printer(spec)
    notes = [stale_export(spec, args.pipeline)]

    def listener(event: str, run: Any, step: Any) -> None:
        # said once the run has started: a run refused before it starts says only why
        note = notes.pop() if notes else None
        if note is not None:
            say(f"warning: {note}")
        printer(event, run, step)

    options = RunOptions(
        parameters=spec.parse_parameters(args.parameter), runs_dir=args.runs_dir,
        jobs=args.jobs, cell_timeout=args.cell_timeout, fail_on_drift=args.fail_on_drift,
        store=args.store, force=True if "*" in (args.force or []) else tuple(args.force or ()),
        only=tuple(args.only or ()), start=args.start, resume=args.resume,
        mirrors={"mlflow": args.mlflow} if args.mlflow else {}, executor=args.executor,
        address=args.scheduler, kernel_pool=args.kernel_pool, kernel=args.kernel,
        started_by=f"cli:{_user()}")
    from ..serving.skewahead import CheckAhead

    # the training/serving skew check of the new run imports what it needs meanwhile
    ahead = CheckAhead(args.pipeline) if spec.inference is not None else None
    try:
        result = run_pipeline(args.pipeline, options=options, listener=listener)
    except BaseException:
        if ahead is not None:
            ahead.close()
        raise
    print(summary(result))
    if result.mlflow_run_id:
        print(f"Mirrored to MLflow at {args.mlflow}: run {result.mlflow_run_id}")
    if result.status != "succeeded":
        if ahead is not None:
            ahead.close()
        say(result.error or "the run did not finish")
        return 1
    if ahead is not None:
        note = ahead.check(args.pipeline, result.run_id, args.store)
        if note:
            print(note)
    return 0


def cmd_warm(args: argparse.Namespace) -> int:
    """``jupyter mlops warm``: the warm zygotes (:mod:`..execution.warm`), or stop them."""
    from ..execution import warm

    sockets = warm.kept()
    if args.stop:
        stopped = [pid for pid in map(warm.stop, sockets) if pid is not None]
        print(f"Stopped {len(stopped)} warm zygote(s)" + (
            f": pid {', '.join(map(str, stopped))}" if stopped else ""))
        return 0
    found = [s for s in map(warm.status, sockets) if s is not None]
    if not found:
        print(f"No warm zygote (kept for {warm.idle_seconds():g} s after a run; "
              f"{warm.VARIABLE} sets it)")
    for state in found:
        print(f"pid {state['pid']}: {state['modules']} modules of {state['python']} for "
              f"{state['folder']}, {state['left']:g} s left")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    """``jupyter mlops test``: pytest on the pipeline's generated tests; exit 1 if any fail."""
    import subprocess

    from ..pipeline.gentests import TESTS_DIR
    from ..pipeline.spec import PipelineSpec

    folder = Path(args.pipeline)
    PipelineSpec.read(folder)  # a clear error for a folder that is not a pipeline
    tests = folder / TESTS_DIR
    if not (tests / "test_pipeline.py").is_file():
        raise MlopsError(f"{folder} has no generated tests; export the notebook again with "
                         "this jupyter-mlops")
    extra = [a for a in args.pytest_args if a != "--"]
    # quiet unless the user chose how verbose (a second -q drops pytest's summary line)
    chosen = any(a.startswith(("--quiet", "--verbose", "--verbosity")) or (
        a.startswith("-") and not a.startswith("--") and ("q" in a or "v" in a))
        for a in extra)
    code = subprocess.call([sys.executable, "-m", "pytest", str(tests), "-p",
                            "no:cacheprovider", *([] if chosen else ["-q"]), *extra])
    return 0 if code == 0 else 1 if code == 1 else 2


