"""``airflow`` and ``kfp``: a pipeline handed to a production engine."""

from __future__ import annotations

import argparse
from typing import Any


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
    airflow.set_defaults(handler=cmd_airflow)

    kfp = sub.add_parser("kfp", help="compile a Kubeflow Pipelines (v2) pipeline",
                         description="Compile the pipeline with the kfp SDK: one container "
                         "component per step running papermill; also writes a Dockerfile and "
                         "the requirements for its image.")
    kfp.add_argument("pipeline", metavar="PIPELINE_DIR")
    kfp.add_argument("-o", "--output", required=True, metavar="PIPELINE_YAML")
    kfp.add_argument("--image", default="jupyter-mlops-pipeline:latest", metavar="IMAGE")
    kfp.set_defaults(handler=cmd_kfp)


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


