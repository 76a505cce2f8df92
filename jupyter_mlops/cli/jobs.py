"""``schedule``, ``jobs`` and ``scheduler``: a pipeline run on time, without anyone pressing Run."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import MlopsError


def add_commands(sub: Any) -> None:
    """Add this module's subcommands to the CLI's subparsers."""
    schedule = sub.add_parser(
        "schedule", help="run a pipeline on a schedule (a job)",
        description="Record a job: the pipeline, its parameters and when to run it. A "
        "scheduler runs it (`jupyter mlops scheduler`, or JupyterLab while it is up).")
    schedule.add_argument("pipeline", metavar="PIPELINE_DIR")
    when = schedule.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", metavar="EXPR", help='a cron expression, e.g. "0 2 * * *"')
    when.add_argument("--every", metavar="DURATION", help="an interval: 10s, 15m, 1h, 1d")
    schedule.add_argument("--tz", metavar="ZONE",
                          help="the cron expression's time zone (default UTC)")
    schedule.add_argument("-p", "--parameter", action="append", default=[],
                          metavar="NAME=VALUE", help="a parameter value (repeatable)")
    schedule.add_argument("--name", help="the job's name (default: the pipeline's)")
    schedule.add_argument("--on-failure", metavar="COMMAND", help="a shell command run when "
                          "a run fails, the run's summary in MLOPS_* environment variables")
    schedule.add_argument("--webhook", metavar="URL",
                          help="POST the run's summary as JSON here when a run fails")
    schedule.add_argument("--notify", choices=("failure", "always"), default="failure",
                          help="alert on failure only (default) or after every run")
    schedule.add_argument("--alert-if", action="append", default=[], metavar="METRIC<VALUE",
                          help="also alert when a succeeded run's metric meets this")
    schedule.add_argument("--store", metavar="PATH", help="the run store (default: "
                          "PIPELINE_DIR/.mlops/store.sqlite)")
    schedule.set_defaults(handler=cmd_schedule)

    jobs = sub.add_parser("jobs", help="list, show, pause, resume, delete or run jobs",
                          description="`jobs` lists the pipeline's jobs with their next run; "
                          "`jobs show|pause|resume|delete|run JOB` acts on one.")
    jobs.add_argument("action", nargs="*", metavar="show|pause|resume|delete|run JOB")
    jobs.add_argument("-C", "--pipeline", default=".", metavar="PIPELINE_DIR",
                      help="the pipeline folder (default: the current folder)")
    jobs.add_argument("--store", metavar="PATH", help="the run store (default: "
                      "PIPELINE_DIR/.mlops/store.sqlite)")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(handler=cmd_jobs)

    scheduler = sub.add_parser(
        "scheduler", help="run due jobs, in the foreground",
        description="Run the jobs of these pipelines (default: every pipeline with a job, "
        "as `jupyter mlops schedule` listed them) when they are due, until stopped.")
    scheduler.add_argument("pipelines", nargs="*", metavar="PIPELINE_DIR")
    scheduler.add_argument("--store", action="append", default=[], metavar="PATH",
                           help="a run store with jobs (repeatable)")
    scheduler.add_argument("--poll", type=float, default=1.0, metavar="S",
                           help="seconds between looks for new or changed jobs (default 1)")
    scheduler.set_defaults(handler=cmd_scheduler)


def cmd_schedule(args: argparse.Namespace) -> int:
    """``jupyter mlops schedule PIPELINE_DIR (--cron EXPR | --every DURATION)``."""
    from ..jobs.api import create_job, list_jobs
    from ..jobs.timing import Schedule

    when = Schedule.of(cron=args.cron, tz=args.tz, every=args.every)
    job = create_job(args.pipeline, when, assignments=args.parameter, name=args.name,
                     store=args.store, alerts={"on_failure": args.on_failure,
                                               "webhook": args.webhook, "notify": args.notify,
                                               "alert_if": args.alert_if})
    view = next(v for v in list_jobs(args.pipeline, store=args.store) if v["name"] == job.name)
    values = ", ".join(f"{k}={v!r}" for k, v in job.parameters.items()) or "the defaults"
    print(f"job {job.name}: {when.describe()}, parameters {values}; next run "
          f"{_when(view['next_run'])}")
    print("  runs while `jupyter mlops scheduler` or JupyterLab is up; "
          f"`jupyter mlops jobs -C {args.pipeline}` lists the jobs")
    return 0


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(stamp)) if stamp else "-"


def _table(views: list[dict[str, Any]]) -> str:
    if not views:
        return "no jobs"
    lines = [f"{'JOB':<20}  {'STATE':<7}  {'SCHEDULE':<30}  {'NEXT RUN':<23}  LAST RUNS"]
    for view in views:
        last = ", ".join(f"{s['outcome']}" for s in view["last_runs"][:3]) or "-"
        lines.append(f"{view['name']:<20}  {view['state']:<7}  "
                     f"{view['schedule']['text']:<30}  {_when(view['next_run']):<23}  {last}")
    return "\n".join(lines)


def _details(view: dict[str, Any]) -> str:
    lines = [f"job {view['name']}: {view['state']}, {view['schedule']['text']}, owner "
             f"{view['owner']}",
             f"  pipeline:   {view['pipeline']}",
             "  parameters: " + (", ".join(f"{k}={v!r}" for k, v in view["parameters"].items())
                                 or "the defaults"),
             f"  next run:   {_when(view['next_run'])}"]
    if view["broken"]:
        lines.append(f"  broken:     {view['broken']}")
    for key, label in (("on_failure", "on failure"), ("webhook", "webhook")):
        if view[key]:
            lines.append(f"  {label + ':':<11} {view[key]} (notify {view['notify']})")
    if view["alert_if"]:
        lines.append(f"  alert if:   {', '.join(view['alert_if'])}")
    lines.append("Last runs:" if view["last_runs"] else "No runs yet.")
    for slot in view["last_runs"]:
        reason = f": {slot['reason']}" if slot["reason"] else ""
        lines.append(f"  {_when(slot['due'])}  {slot['trigger']:<9} {slot['outcome']:<10} "
                     f"{slot['run_id'] or '-'}  ({slot['late']:.2f} s late){reason}")
        if slot["alert"]:
            lines.append(f"    alert: {slot['alert']}")
    return "\n".join(lines)


def cmd_jobs(args: argparse.Namespace) -> int:
    """``jupyter mlops jobs [show|pause|resume|delete|run JOB]``."""
    from ..jobs import api

    action = args.action
    if not action:
        views = api.list_jobs(args.pipeline, store=args.store)
        print(json.dumps(views, indent=1, default=str) if args.json else _table(views))
        return 0
    verbs = ("show", "pause", "resume", "delete", "run")
    if action[0] not in verbs or len(action) != 2:
        raise MlopsError(f"`jobs {' '.join(action)}` is not a jobs command; use `jobs`, or "
                         f"`jobs {'|'.join(verbs)} JOB`")
    verb, name = action
    if verb == "delete":
        api.delete_job(args.pipeline, name, store=args.store)
        print(f"job {name} deleted (its runs stay in the store)")
        return 0
    if verb == "run":
        from ..jobs.manual import run_job_now

        outcome = run_job_now(args.pipeline, name, store=args.store)
        print(outcome.line)
        return outcome.exit_code
    if verb == "show":
        view = next((v for v in api.list_jobs(args.pipeline, store=args.store)
                     if v["name"] == name), None)
        if view is None:
            api.get_job(args.pipeline, name, store=args.store)  # raises, naming the jobs
    else:
        view = api.set_job_state(args.pipeline, name, "paused" if verb == "pause" else "active",
                                 store=args.store)
    print(json.dumps(view, indent=1, default=str) if args.json else _details(view))
    return 0


def cmd_scheduler(args: argparse.Namespace) -> int:
    """``jupyter mlops scheduler [PIPELINE_DIR ...]``: due jobs run until Ctrl-C or SIGTERM."""
    import logging
    import signal
    import threading

    from ..jobs import registry
    from ..jobs.scheduler import LOG, Scheduler
    from ..run.store import default_store

    if args.poll <= 0:
        raise MlopsError(f"--poll needs a positive number of seconds, got {args.poll}")
    named = [default_store(p) for p in args.pipelines] + [Path(s) for s in args.store]
    for pipeline in args.pipelines:
        if not (Path(pipeline) / "pipeline.yaml").is_file():
            raise MlopsError(f"{pipeline} is not a pipeline folder (no pipeline.yaml); export "
                             "one with `jupyter mlops export NOTEBOOK`")

    def stores() -> list[Path]:
        return named or registry.registered()

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    where = ", ".join(str(s) for s in named) if named else \
        f"the stores listed in {registry.registry_file()}"
    LOG.info("running the jobs of %s; Ctrl-C stops", where)
    scheduler = Scheduler(stores, poll=args.poll, drop_missing=not named)
    try:
        scheduler.run(stop)
    except KeyboardInterrupt:
        scheduler.close()
        LOG.info("stopped; runs already started go on and the next scheduler records them")
    return 0
