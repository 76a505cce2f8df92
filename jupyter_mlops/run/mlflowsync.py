"""The MLflow mirror: a finished run copied into MLflow (parameters, metrics, model, notebooks).

The model goes as its skops file, never pickled; the requirements are the packages the steps
import, given explicitly, so MLflow spends no time inferring them.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError
from .mirrors import Mirror

if TYPE_CHECKING:
    from .results import RunResult

EXTRA_HINT = "pip install 'jupyter-mlops[mlflow]'"


def require_mlflow() -> Any:
    """The mlflow module, or a one-line error saying which extra to install."""
    try:
        import mlflow
    except ImportError:
        raise MlopsError(f"mirroring a run to MLflow needs MLflow, which is not installed; "
                         f"{EXTRA_HINT}") from None
    return mlflow


def mirror_run(result: RunResult, uri: str, packages: dict[str, str]) -> str:
    """Log ``result`` to the MLflow tracking server or store at ``uri``; the MLflow run id."""
    mlflow = require_mlflow()
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(result.pipeline)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        # MLflow would put the artifacts of a local store in ./mlruns of whatever folder the
        # command runs in; beside the database is where a user will look for them
        location = None
        if uri.startswith("sqlite:///"):
            location = (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts"
                        / result.pipeline).as_uri()
        experiment_id = client.create_experiment(result.pipeline, artifact_location=location)
    run = client.create_run(experiment_id, run_name=result.run_id, tags={
        "jupyter_mlops.run_id": result.run_id, "jupyter_mlops.status": result.status,
        "jupyter_mlops.folder": str(result.folder),
        **{f"jupyter_mlops.step.{s.name}": s.status for s in result.steps}})
    run_id = run.info.run_id
    for name, value in result.parameters.items():
        client.log_param(run_id, name, str(value)[:500])
    for step in result.steps:
        for name, manifest in step.outputs.items():
            value = manifest.get("value")
            if manifest.get("role") == "metrics" and isinstance(value, (int, float)):
                client.log_metric(run_id, name, float(value))
            if manifest.get("kind") == "skops":
                model = Path(result.folder) / "artifacts" / step.name / manifest["file"]
                client.log_artifact(run_id, str(model), artifact_path=f"models/{step.name}")
        if step.notebook and Path(step.notebook).is_file():
            client.log_artifact(run_id, step.notebook, artifact_path="notebooks")
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text("".join(f"{name}=={version}\n"
                                        for name, version in sorted(packages.items())))
        client.log_artifact(run_id, str(requirements))
    run_file = Path(result.folder) / "run.json"
    if run_file.is_file():
        client.log_artifact(run_id, str(run_file))
    client.set_terminated(run_id, "FINISHED" if result.status == "succeeded" else "FAILED")
    return run_id


class MlflowMirror(Mirror):
    """Mirrors runs to the MLflow tracking server or store at its target URI."""

    name = "mlflow"

    @classmethod
    def open(cls, target: str) -> MlflowMirror:
        """Say which extra is missing before anything runs."""
        require_mlflow()
        return cls(target)

    def mirror(self, result: RunResult, packages: dict[str, str]) -> str:
        """Log ``result`` to MLflow; the MLflow run id."""
        return mirror_run(result, self.target, packages)
