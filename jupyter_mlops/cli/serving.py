"""``serve`` and ``monitor``: a run's model in service, watched, and retrained."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import MlopsError


def add_commands(sub: Any) -> None:
    """Add this module's subcommands to the CLI's subparsers."""
    _add_serve(sub)
    _add_monitor_and_predict(sub)


def _add_serve(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve a run's model over HTTP",
                           description="Serve a run's model: POST /predict (JSON records, "
                           "checked against the training schema), POST /predict/raw (records "
                           "shaped like the loaded data, when cells are marked prepare), "
                           "GET /health, GET /metrics "
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
    serve.add_argument("--batch-window", type=float, default=2.0, metavar="MS",
                       help="wait up to this many milliseconds for other requests to predict "
                       "together (default: 2; 0 predicts each request alone)")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="server processes sharing the port (default: 1; each reports "
                       "its own /metrics)")
    serve.add_argument("-C", "--pipeline", metavar="PIPELINE_DIR",
                       help="with a RUN_ID: the pipeline whose store holds it (default: .)")
    serve.add_argument("--store", metavar="PATH", help="the run store (default: "
                       "PIPELINE_DIR/.mlops/store.sqlite)")
    serve.set_defaults(handler=cmd_serve)


def _add_monitor_and_predict(sub: Any) -> None:

    monitor = sub.add_parser("monitor", help="check new data for drift and the model's metrics",
                             description="Compare new data with the served run: drift per "
                             "column and, with --labels, the metrics computed again. Exit 0 "
                             "when healthy, 3 when drift or a metric crosses its threshold.")
    monitor.add_argument("pipeline", metavar="PIPELINE_DIR")
    monitor.add_argument("--data", required=True, metavar="NEW_DATA",
                         help="a CSV, Parquet or JSON-lines file")
    monitor.add_argument("--labels", metavar="COLUMN",
                         help="the column of true outcomes: recompute the metrics")
    monitor.add_argument("--stage", metavar="STEP",
                         help="compare with a frame of this step (default: the frame whose "
                         "columns are most like the new data's)")
    monitor.add_argument("--report", metavar="DIR", help="where monitor.json and monitor.html "
                         "go (default: PIPELINE_DIR/monitoring/TIME/)")
    monitor.add_argument("--retrain", action="store_true",
                         help="when unhealthy, run the pipeline on the new data and promote "
                         "the new run if it is not worse (also done when pipeline.yaml has "
                         "a retrain: policy)")
    monitor.add_argument("--store", metavar="PATH", help="the run store (default: "
                         "PIPELINE_DIR/.mlops/store.sqlite)")
    monitor.add_argument("--json", action="store_true", help="print the report as JSON")
    monitor.set_defaults(handler=cmd_monitor)

    predict = sub.add_parser(
        "predict", help="score a file of records with a run's model",
        description="Predict every record of a CSV, Parquet or JSON-lines file with the "
        "served run's model (or --run), in chunks. A pipeline whose notebook marks cells "
        "`prepare` takes raw records, prepared as the notebook prepared its data.")
    predict.add_argument("pipeline", metavar="PIPELINE_DIR")
    predict.add_argument("--data", required=True, metavar="RECORDS",
                         help="a .csv, .parquet or .jsonl file")
    predict.add_argument("-o", "--output", metavar="OUT", help="where the predictions go "
                         "(.csv, .parquet or .jsonl; default: RECORDS' name + .predictions.csv)")
    predict.add_argument("--run", metavar="RUN_ID", help="the run whose model predicts "
                         "(default: the served one)")
    predict.add_argument("--store", metavar="PATH", help="the run store (default: "
                         "PIPELINE_DIR/.mlops/store.sqlite)")
    predict.set_defaults(handler=cmd_predict)

    promote = sub.add_parser("promote", help="serve a run from now on, decided by hand",
                             description="Serve RUN_ID from now on: the decision the "
                             "automatic rule leaves to you (a metric of unknown direction, "
                             "no metric in common), recorded with the figures.")
    promote.add_argument("run_id", metavar="RUN_ID")
    promote.add_argument("-C", "--pipeline", default=".", metavar="PIPELINE_DIR",
                         help="the pipeline folder (default: .)")
    promote.add_argument("--store", metavar="PATH", help="the run store (default: "
                         "PIPELINE_DIR/.mlops/store.sqlite)")
    promote.set_defaults(handler=cmd_promote)


def cmd_serve(args: argparse.Namespace) -> int:
    """``jupyter mlops serve``: runs until interrupted."""
    from ..serving.serve import serve, serving_state

    if not 0 <= args.port <= 65535:
        raise MlopsError(f"--port {args.port} is not a port; give 0 to 65535")
    if args.window < 1 or args.check_every <= 0:
        raise MlopsError("--window needs at least 1 row and --check-every a positive number")
    if not 0 <= args.batch_window <= 1000 or not 1 <= args.workers <= 64:
        raise MlopsError("--batch-window needs 0 to 1000 milliseconds and --workers 1 to 64 "
                         "processes")
    state = serving_state(args.target, store=args.store, pipeline_dir=args.pipeline,
                          model_name=args.model, allow_pickle=args.allow_pickle,
                          window=args.window)
    state.batcher.window = args.batch_window / 1000
    serve(state, args.host, args.port, args.check_every, workers=args.workers)
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
                     policy=policy, frame=frame, stage=args.stage)
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



def cmd_predict(args: argparse.Namespace) -> int:
    """``jupyter mlops predict PIPELINE_DIR --data RECORDS``."""
    import sys

    from ..serving.batch import predict_file

    bar: Any = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=total, unit=" records", file=sys.stderr)
        if bar is not None:
            bar.update(done - bar.n)

    try:
        result = predict_file(args.pipeline, args.data, output=args.output, run_id=args.run,
                              store=args.store, progress=progress)
    finally:
        if bar is not None:
            bar.close()
    dropped = (f"; {result.dropped:,} dropped by the preparation (no prediction)"
               if result.dropped else "")
    kind = "raw records, prepared by the notebook's prepare cells" if result.prepared else \
        "model inputs"
    print(f"Wrote {result.output}: {result.predicted:,} predictions of {result.rows:,} "
          f"{kind}, model `{result.model}` of run {result.run_id}, {result.seconds:.1f} s"
          f"{dropped}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """``jupyter mlops promote``."""
    import getpass

    from ..serving.retrain import promote

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment (some containers)
        user = "hand"
    reason = promote(args.pipeline, args.run_id, store=args.store, by=user)
    print(f"Run {args.run_id} is served now: {reason}")
    return 0


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


