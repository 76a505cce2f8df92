"""``jupyter mlops SUBCOMMAND``: a thin face over the library.

Heavy libraries are imported inside the subcommands, so ``--help`` answers at once. Every
error a user can cause ends as one line on stderr and exit 2; a failed step exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from .. import __version__
from ..errors import MlopsError
from ..run.startup import skip_slow_optional_imports

PROG = "jupyter mlops"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _store_options(parser: argparse.ArgumentParser) -> None:
    """Where the recorded runs are, and the output format: shared by `runs` and `lineage`."""
    parser.add_argument("-C", "--pipeline", default=".", metavar="PIPELINE_DIR",
                        help="the pipeline folder (default: the current folder)")
    parser.add_argument("--store", metavar="PATH", help="the run store (default: "
                        "PIPELINE_DIR/.mlops/store.sqlite)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Turn a marked Jupyter notebook into a tested, "
                     "tracked papermill pipeline, and run it.")
    parser.add_argument("--version", action="version", version=f"jupyter-mlops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
                     help="fail a cell that runs longer than S seconds")
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
    run.add_argument("--no-pool", dest="kernel_pool", action="store_false",
                     help="start each step's kernel when the step starts, not ahead of it")
    run.add_argument("--executor", choices=["local", "dask"], default="local",
                     help="where step notebooks run (dask needs jupyter-mlops[dask])")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="the Dask scheduler, e.g. tcp://127.0.0.1:8786")
    run.add_argument("--mlflow", metavar="URI",
                     help="mirror the run into MLflow at this tracking URI "
                     "(needs jupyter-mlops[mlflow])")
    run.add_argument("--fail-on-drift", action="store_true", default=None,
                     help="fail a step whose data drifted from what the notebook saw "
                     "(default: warn, or the pipeline's own setting)")

    test = sub.add_parser("test", help="run the tests generated for a pipeline",
                          description="Run the pytest tests that export generated from what "
                          "the notebook captured; extra arguments go to pytest.")
    test.add_argument("pipeline", metavar="PIPELINE_DIR")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS")

    runs = sub.add_parser("runs", help="list recorded runs, show one, or compare two",
                          description="`runs` lists the runs, `runs show RUN_ID` shows one, "
                          "`runs diff A B` compares two (parameters, data, outputs, metrics).")
    runs.add_argument("action", nargs="*", metavar="show RUN_ID | diff A B | report RUN_ID")
    runs.add_argument("-o", "--output", metavar="FILE",
                      help="where `runs report` writes its HTML (default: RUN_FOLDER/report.html)")
    _store_options(runs)

    airflow = sub.add_parser("airflow", help="write an Airflow DAG for a pipeline",
                             description="Write one Airflow DAG file for the pipeline: a task "
                             "per step calling papermill, typed params, checks enforced.")
    airflow.add_argument("pipeline", metavar="PIPELINE_DIR")
    airflow.add_argument("-o", "--output", required=True, metavar="DAGS_DIR")
    airflow.add_argument("--artifacts", metavar="LOCATION",
                         help="shared location of the runs' artifacts (a path or fsspec URL)")
    airflow.add_argument("--retries", type=int, default=0, metavar="N")
    airflow.add_argument("--timeout", type=float, metavar="S",
                         help="time limit of each task, in seconds")

    kfp = sub.add_parser("kfp", help="compile a Kubeflow Pipelines (v2) pipeline",
                         description="Compile the pipeline with the kfp SDK: one container "
                         "component per step running papermill; also writes a Dockerfile and "
                         "the requirements for its image.")
    kfp.add_argument("pipeline", metavar="PIPELINE_DIR")
    kfp.add_argument("-o", "--output", required=True, metavar="PIPELINE_YAML")
    kfp.add_argument("--image", default="jupyter-mlops-pipeline:latest", metavar="IMAGE")

    lineage = sub.add_parser("lineage", help="what produced a variable of a run",
                             description="Which run, step, code, parameters, data files and "
                             "inputs produced RUN_ID:VARIABLE, down to the start.")
    lineage.add_argument("target", metavar="RUN_ID:VARIABLE")
    _store_options(lineage)

    serve = sub.add_parser("serve", help="serve a run's model over HTTP",
                           description="Serve a run's model: POST /predict (JSON records, "
                           "checked against the training schema), GET /health, GET /metrics "
                           "(Prometheus). A PIPELINE_DIR serves its promoted run (else its "
                           "latest successful one) and follows new promotions.")
    serve.add_argument("target", metavar="RUN_ID|PIPELINE_DIR")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on "
                       "(default: 127.0.0.1, this machine only)")
    serve.add_argument("--port", type=int, default=8000, metavar="N",
                       help="port (default: 8000; 0 picks a free one)")
    serve.add_argument("--model", metavar="NAME",
                       help="which model of the run (default: the last one the pipeline makes)")
    serve.add_argument("--window", type=int, default=1000, metavar="ROWS",
                       help="recent input rows whose drift /metrics reports (default: 1000)")
    serve.add_argument("--check-every", type=float, default=2.0, metavar="S",
                       help="how often a served PIPELINE_DIR looks for a new promotion")
    serve.add_argument("--allow-pickle", action="store_true",
                       help="load a model saved with --allow-pickle (only one you trust)")
    serve.add_argument("-C", "--pipeline", metavar="PIPELINE_DIR",
                       help="with a RUN_ID: the pipeline whose store holds it (default: .)")
    serve.add_argument("--store", metavar="PATH", help="the run store (default: "
                       "PIPELINE_DIR/.mlops/store.sqlite)")

    monitor = sub.add_parser("monitor", help="check new data for drift and the model's metrics",
                             description="Compare new data with the served run: drift per "
                             "column and, with --labels, the metrics computed again. Exit 0 "
                             "when healthy, 3 when drift or a metric crosses its threshold.")
    monitor.add_argument("pipeline", metavar="PIPELINE_DIR")
    monitor.add_argument("--data", required=True, metavar="NEW_DATA",
                         help="a CSV, Parquet or JSON-lines file")
    monitor.add_argument("--labels", metavar="COLUMN",
                         help="the column of true outcomes: recompute the metrics")
    monitor.add_argument("--report", metavar="DIR", help="where monitor.json and monitor.html "
                         "go (default: PIPELINE_DIR/monitoring/TIME/)")
    monitor.add_argument("--retrain", action="store_true",
                         help="when unhealthy, run the pipeline on the new data and promote "
                         "the new run if it is not worse (also done when pipeline.yaml has "
                         "a retrain: policy)")
    monitor.add_argument("--store", metavar="PATH", help="the run store (default: "
                         "PIPELINE_DIR/.mlops/store.sqlite)")
    monitor.add_argument("--json", action="store_true", help="print the report as JSON")

    show = sub.add_parser("show", help="show the steps, data flow, parameters and problems",
                          description="Show what a notebook would export to, or what a "
                          "pipeline folder holds.")
    show.add_argument("target", metavar="NOTEBOOK|PIPELINE_DIR")
    show.add_argument("--json", action="store_true", help="print JSON (what the sidebar reads)")
    show.add_argument("--split", choices=["headings"],
                      help="start a step at each level-2 markdown heading")
    return parser


def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def cmd_export(args: argparse.Namespace) -> int:
    """``jupyter mlops export``."""
    from ..pipeline.export import export

    result = export(args.notebook, args.output, split=args.split, allow_pickle=args.allow_pickle)
    for warning in result.warnings:
        _err(f"warning: {warning.message}")
    steps = ", ".join(s.name for s in result.spec.steps)
    print(f"Exported {Path(args.notebook).name} to {result.folder}/ "
          f"({len(result.spec.steps)} steps: {steps})")
    print(f"Run it with: jupyter mlops run {result.folder}")
    return 0


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "unknown"


def cmd_run(args: argparse.Namespace) -> int:
    """``jupyter mlops run``."""
    import logging

    from ..pipeline.spec import PipelineSpec
    from ..run.report import progress_printer, summary
    from ..run.runner import run_pipeline

    # Each failure is reported once, in our own words; papermill's log lines would repeat it.
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    spec = PipelineSpec.read(args.pipeline)
    values = spec.parse_parameters(args.parameter)
    result = run_pipeline(args.pipeline, values, runs_dir=args.runs_dir, jobs=args.jobs,
                          cell_timeout=args.cell_timeout, listener=progress_printer(spec),
                          fail_on_drift=args.fail_on_drift, store=args.store,
                          force=True if "*" in (args.force or []) else (args.force or []),
                          only=args.only, start=args.start, resume=args.resume,
                          mlflow=args.mlflow, executor=args.executor,
                          scheduler=args.scheduler, kernel_pool=args.kernel_pool,
                          started_by=f"cli:{_user()}")
    print(summary(result))
    if result.mlflow_run_id:
        print(f"Mirrored to MLflow at {args.mlflow}: run {result.mlflow_run_id}")
    if result.status != "succeeded":
        _err(result.error or "the run did not finish")
        return 1
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
    code = subprocess.call([sys.executable, "-m", "pytest", str(tests), "-p",
                            "no:cacheprovider", "-q", *extra])
    return 0 if code == 0 else 1 if code == 1 else 2


def cmd_runs(args: argparse.Namespace) -> int:
    """``jupyter mlops runs [show RUN_ID | diff A B]``."""
    import json

    from ..run.runsview import run_details, runs_diff, runs_table
    from ..run.store import RunStore, default_store

    if args.command == "lineage":
        if ":" not in args.target:
            raise MlopsError(f"`{args.target}` is not RUN_ID:VARIABLE, e.g. "
                             "`jupyter mlops lineage 20261124-101500-ab12cd:model`")
        args.action = ["lineage", args.target]
    path = Path(args.store) if args.store else default_store(args.pipeline)
    if not path.is_file():
        raise MlopsError(f"no run store at {path}; run the pipeline first, or name its folder "
                         "with -C PIPELINE_DIR")
    store = RunStore(path)
    try:
        action = args.action
        if not action:
            data: Any = store.runs()
            text = runs_table(data)
        elif action[0] == "show" and len(action) == 2:
            data = store.run(action[1])
            text = run_details(data)
        elif action[0] == "diff" and len(action) == 3:
            data = [store.run(action[1]), store.run(action[2])]
            text = runs_diff(*data)
        elif action[0] == "report" and len(action) == 2:
            from ..run.htmlreport import render_report
            from ..runtime._files import atomic_write

            data = store.run(action[1])
            history = [store.run(r["run_id"]) for r in store.runs(limit=1000)
                       if r["pipeline"] == data["pipeline"]]
            target = Path(args.output) if args.output else Path(data["folder"]) / "report.html"
            atomic_write(target, render_report(data, history))
            data, text = {"report": str(target)}, f"Wrote {target}"
        elif action[0] == "lineage" and len(action) == 2 and ":" in action[1]:
            from ..run.lineage import lineage, lineage_text

            run_id, variable = action[1].split(":", 1)
            data = lineage(store, run_id, variable)
            text = lineage_text(data)
        else:
            raise MlopsError(f"`runs {' '.join(action)}` is not a runs command; use `runs`, "
                             "`runs show RUN_ID`, `runs diff A B`, `runs report RUN_ID` or "
                             "`lineage RUN_ID:VARIABLE`")
    finally:
        store.close()
    print(json.dumps(data, indent=1, default=str) if args.json else text)
    return 0


def cmd_airflow(args: argparse.Namespace) -> int:
    """``jupyter mlops airflow``: one DAG file for the pipeline."""
    from ..deploy.airflow_dag import write_dag

    path = write_dag(args.pipeline, args.output, artifacts=args.artifacts,
                     retries=args.retries, timeout=args.timeout)
    print(f"Wrote {path}")
    return 0


def cmd_kfp(args: argparse.Namespace) -> int:
    """``jupyter mlops kfp``: a compiled KFP v2 pipeline, a Dockerfile and requirements."""
    from ..deploy.kfp_pipeline import compile_pipeline

    for path in compile_pipeline(args.pipeline, args.output, image=args.image):
        print(f"Wrote {path}")
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


def cmd_serve(args: argparse.Namespace) -> int:
    """``jupyter mlops serve``: runs until interrupted."""
    from ..serving.serve import serve, serving_state

    if not 0 <= args.port <= 65535:
        raise MlopsError(f"--port {args.port} is not a port; give 0 to 65535")
    if args.window < 1 or args.check_every <= 0:
        raise MlopsError("--window needs at least 1 row and --check-every a positive number")
    state = serving_state(args.target, store=args.store, pipeline_dir=args.pipeline,
                          model_name=args.model, allow_pickle=args.allow_pickle,
                          window=args.window)
    serve(state, args.host, args.port, args.check_every)
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    """``jupyter mlops monitor``: exit 0 healthy, 3 unhealthy (retrained or not)."""
    import json
    import time

    from ..serving.monitor import EXIT_UNHEALTHY, monitor, read_table, summary, write_report
    from ..serving.retrain import read_policy

    policy = read_policy(args.pipeline)
    frame = read_table(args.data)
    report = monitor(args.pipeline, args.data, labels=args.labels, store=args.store,
                     policy=policy, frame=frame)
    folder = Path(args.report) if args.report else Path(args.pipeline) / "monitoring" / \
        time.strftime("%Y%m%d-%H%M%S")
    paths = write_report(report, folder, frame)
    if not args.json:
        print(summary(report))
        print(f"Wrote {paths[0]} and {paths[1]}", flush=True)
    outcome = None
    if not report["healthy"] and (args.retrain or policy.defined):
        outcome = _retrain(args, report, policy)
    elif not report["healthy"] and not args.json:
        print("Retrain on this data with --retrain, or add a retrain: policy to pipeline.yaml")
    if args.json:
        data = {k: v for k, v in report.items() if k != "profile"}
        print(json.dumps({**data, "report": [str(p) for p in paths], "retrain": outcome},
                         indent=1, default=str))
    return 0 if report["healthy"] else EXIT_UNHEALTHY


def _retrain(args: argparse.Namespace, report: dict[str, Any], policy: Any) -> dict[str, Any]:
    """Run the pipeline on the monitored data and apply the promotion rule."""
    import logging

    from ..pipeline.spec import PipelineSpec
    from ..run.report import progress_printer
    from ..serving.retrain import retrain

    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    trigger = {"trigger": "metrics" if any(m["ok"] is False for m in report["metrics"])
               else "drift", "by": "monitor", "data": report["data"],
               "reasons": report["reasons"], "drift_share": report["drift"]["share"],
               "drifted": report["drift"]["drifted"],
               "scores": {k: v["score"] for k, v in report["drift"]["columns"].items()},
               "metrics": {m["name"]: m["value"] for m in report["metrics"]}}
    if not args.json:
        print(f"Retraining on {report['data']} ...", flush=True)
    outcome = retrain(args.pipeline, args.data, trigger, store=args.store, policy=policy,
                      listener=progress_printer(PipelineSpec.read(args.pipeline)))
    if not args.json:
        verdict = "promoted: it is served now" if outcome["promoted"] else \
            f"not promoted: run {outcome['served']} stays in service"
        print(f"Retrained: run {outcome['run_id']} {outcome['status']}, {verdict} "
              f"({outcome['reason']})")
    return outcome


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jupyter-mlops`` (and so of ``jupyter mlops``)."""
    skip_slow_optional_imports()
    parser = _parser()
    args = parser.parse_args(argv)
    commands: dict[str, Any] = {"export": cmd_export, "run": cmd_run, "show": cmd_show,
                                "test": cmd_test, "runs": cmd_runs, "lineage": cmd_runs,
                                "airflow": cmd_airflow, "kfp": cmd_kfp,
                                "serve": cmd_serve, "monitor": cmd_monitor}
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return commands[args.command](args)
    except MlopsError as err:
        for line in str(err).splitlines():
            _err(f"error: {line}")
        return err.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as err:  # a bug of ours: say so in one line, traceback on request
        if os.environ.get("MLOPS_DEBUG"):
            raise
        _err(f"internal error: {type(err).__name__}: {err} (please report it; set "
             "MLOPS_DEBUG=1 to see the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
