"""``airflow``, ``kfp`` and ``kernel``: a pipeline handed to a production engine, or to
another environment's kernel."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError
from .common import say

if TYPE_CHECKING:
    from ..deploy.timetable import Timetable


def _add_job_options(parser: argparse.ArgumentParser, engine: str) -> None:
    """``--job NAME`` and ``--store PATH``, the same on every engine."""
    parser.add_argument("--job", metavar="NAME",
                        help=f"put this job's schedule and parameters on the {engine} (a job "
                        "made by `jupyter mlops schedule`)")
    parser.add_argument("--store", metavar="PATH",
                        help="the run store holding the job (default: the pipeline's)")


def add_commands(sub: Any) -> None:
    """Add this module's subcommands to the CLI's subparsers."""
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
    _add_job_options(airflow, "DAG")
    airflow.set_defaults(handler=cmd_airflow)

    kfp = sub.add_parser("kfp", help="compile a Kubeflow Pipelines (v2) pipeline",
                         description="Compile the pipeline with the kfp SDK: one container "
                         "component per step running papermill; also writes a Dockerfile and "
                         "the requirements for its image.")
    kfp.add_argument("pipeline", metavar="PIPELINE_DIR")
    kfp.add_argument("-o", "--output", required=True, metavar="PIPELINE_YAML")
    kfp.add_argument("--image", default="jupyter-mlops-pipeline:latest", metavar="IMAGE")
    _add_job_options(kfp, "pipeline, as a recurring run beside it")
    kfp.set_defaults(handler=cmd_kfp)

    kernel = sub.add_parser(
        "kernel", help="make another Python environment a pipeline kernel, changing no version",
        description="Install the jupyter-mlops kernel runtime into the environment of PYTHON "
        "with that environment's own versions as constraints (nothing installed there "
        "changes), adding pyarrow and skops where they fit, and register a Jupyter "
        "kernel for it. Then: jupyter mlops export NOTEBOOK --kernel NAME.")
    kernel.add_argument("python", metavar="PYTHON",
                        help="the environment's interpreter, e.g. /path/to/venv/bin/python")
    kernel.add_argument("--name", metavar="NAME",
                        help="the kernel's name (default: mlops-<environment folder>)")
    kernel.add_argument("--display-name", metavar="TEXT", help="the name JupyterLab shows")
    kernel.add_argument("--dry-run", action="store_true",
                        help="say what would be installed and registered; change nothing")
    kernel.add_argument("--in-env", action="store_true",
                        help="register the kernel inside PYTHON's environment (for Jupyter "
                        "or Airflow running from there), not for this user")
    kernel.set_defaults(handler=cmd_kernel)


def _timetable(args: argparse.Namespace) -> Timetable | None:
    """The job ``--job`` names, as the exports take it; None without ``--job``."""
    if args.job is None:
        if args.store is not None:
            raise MlopsError("--store names the run store of a job: give the job with --job "
                             "NAME too (`jupyter mlops jobs` lists them)")
        return None
    from ..jobs.api import job_timetable

    return job_timetable(args.pipeline, args.job, store=args.store)


def cmd_airflow(args: argparse.Namespace) -> int:
    """``jupyter mlops airflow``: one DAG file for the pipeline, or for one of its jobs."""
    from ..deploy.airflow_dag import write_dag

    timetable = _timetable(args)
    path = write_dag(args.pipeline, args.output, artifacts=args.artifacts,
                     retries=args.retries, timeout=args.timeout, timetable=timetable)
    print(f"Wrote {path}{timetable.said() if timetable else ''}")
    return 0


def cmd_kfp(args: argparse.Namespace) -> int:
    """``jupyter mlops kfp``: a compiled KFP v2 pipeline, a Dockerfile and requirements, and
    with ``--job`` the job's recurring run."""
    from ..deploy.kfp_pipeline import compile_pipeline, recurring_path, zone_warning

    timetable = _timetable(args)
    recurring = recurring_path(args.output) if timetable else None
    for path in compile_pipeline(args.pipeline, args.output, image=args.image,
                                 timetable=timetable):
        print(f"Wrote {path}{timetable.said() if timetable and path == recurring else ''}")
    warning = zone_warning(timetable) if timetable else None
    if warning:
        say(f"warning: {warning}")
    return 0


def cmd_kernel(args: argparse.Namespace) -> int:
    """``jupyter mlops kernel PYTHON``: the runtime installed there, a kernel registered."""
    from ..deploy.kernelenv import setup_kernel

    setup = setup_kernel(args.python, args.name, args.display_name, dry_run=args.dry_run,
                         in_env=args.in_env)
    for line in setup.lines():
        print(line)
    return 0
