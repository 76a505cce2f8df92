"""The record of a run as it goes: each step's state, and the run's, as in ``run.json``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"


@dataclass
class StepResult:
    """The state of one step in a run."""

    name: str
    status: str = "pending"  # pending, running, done, failed, not run, skipped
    started: float | None = None
    ended: float | None = None
    notebook: str = ""
    error: str | None = None
    cell: int | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the step's data and metric cells checked (schema, drift, thresholds).
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: While it runs: the cell papermill is on, of how many (markdown cells included).
    cell_index: int | None = None
    cell_total: int | None = None
    cache_key: str | None = None
    #: sha256 of each data file the step's code or parameters name.
    files: dict[str, str] = field(default_factory=dict)
    #: The run whose outputs this step reused instead of running, if any.
    cached_from: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the step ran, once it has ended."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started


@dataclass
class RunResult:
    """A run of a pipeline: what it was given and what each step did."""

    run_id: str
    folder: Path
    pipeline: str
    parameters: dict[str, Any]
    steps: list[StepResult]
    status: str = "running"  # running, succeeded, failed, cancelled (SIGTERM, a cancel)
    started: float = field(default_factory=time.time)
    ended: float | None = None
    error: str | None = None
    #: The id each mirror gave this run, by mirror name (``{"mlflow": MLFLOW_RUN_ID}``).
    mirrored: dict[str, str] = field(default_factory=dict)

    @property
    def mlflow_run_id(self) -> str | None:
        """The MLflow run this run was mirrored to, if it was."""
        return self.mirrored.get("mlflow")

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-able data (``run.json``)."""
        data = asdict(self)
        data["folder"] = str(self.folder)
        for step, result in zip(data["steps"], self.steps, strict=True):
            step["duration"] = result.duration
        data["duration"] = None if self.ended is None else self.ended - self.started
        return data


Listener = Callable[[str, RunResult, StepResult], None]


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"
