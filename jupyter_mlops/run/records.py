"""The run store's records, typed: a run, its steps, and promotion decisions.

The store reads its rows into these and writes them from these; the views, lineage, serving,
monitoring and the sidebar read their attributes. ``to_dict`` gives the JSON that
``runs --json`` prints (the same keys as the store's columns).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

#: A step's output manifests, by variable: file, kind, sha256, role, value (for metrics)...
Outputs = dict[str, dict[str, Any]]


@dataclass
class StepRecord:
    """One step of a recorded run: how it ended, what it read and what it made."""

    run_id: str
    step: str
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    #: The content key the step's result is cached under (code, parameters, inputs, ...).
    cache_key: str | None = None
    #: The run whose result this step reused, when it came from the cache.
    cached_from: str | None = None
    notebook: str | None = None
    error: str | None = None
    #: The data and metric checks the step's magics ran (``checks.json``).
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: Data files the step read, with their fingerprints.
    files: dict[str, str] = field(default_factory=dict)
    #: Each input variable: the step that made it and its sha256.
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)
    code_sha256: str | None = None
    #: The parameters the step used, with their values.
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: Outputs = field(default_factory=dict)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, once ended."""
        if self.started is None or self.ended is None:
            return None
        return self.ended - self.started

    def metrics(self) -> dict[str, float]:
        """The step's numeric metric outputs, by name."""
        return {name: float(m["value"]) for name, m in self.outputs.items()
                if m.get("role") == "metrics" and isinstance(m.get("value"), (int, float))}


@dataclass
class RunRecord:
    """A recorded run: its parameters, environment, steps and metrics."""

    run_id: str
    pipeline: str
    spec_sha256: str
    status: str
    started: float
    folder: str
    ended: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Python, the git commit, and each step's imported packages with their versions.
    environment: dict[str, Any] = field(default_factory=dict)
    started_by: str = "api"
    error: str | None = None
    #: Why a retraining run started (``{"trigger": ..., "scores": ...}``), else None.
    trigger: dict[str, Any] | None = None
    #: The run a retraining run was meant to replace.
    replaces: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    #: Every step's metrics, by name.
    metrics: dict[str, float] = field(default_factory=dict)
    #: Whether its pipeline serves this run now (set by :meth:`RunStore.runs`).
    served: bool = False
    #: Why the store could not read this run's record (a damaged row), else None; set by
    #: :meth:`RunStore.runs`, which lists such a run with what it could read.
    unreadable: str | None = None
    #: The process that runs (or ran) it: its pid, its host's name, and the time the
    #: process started (``psutil.Process.create_time()``, which tells a reused pid apart);
    #: None in a run recorded by a jupyter-mlops older than these columns.
    runner_pid: int | None = None
    runner_host: str | None = None
    runner_started: float | None = None
    #: When its runner last said it was alive (every few seconds while it runs).
    heartbeat: float | None = None
    #: Why a run recorded as running has no runner any more, with the figures that show it
    #: and how to resume it; its ``status`` then reads ``interrupted``. Decided when the
    #: store reads the run (:func:`.store.runner_gone`), never written to the store.
    interrupted: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, once ended."""
        return None if self.ended is None else self.ended - self.started

    def step(self, name: str) -> StepRecord | None:
        """The record of step ``name``, if the run has one."""
        return next((s for s in self.steps if s.step == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The run as JSON-able data."""
        return asdict(self)


@dataclass(frozen=True)
class Runner:
    """The process that runs a run, as the store records it: enough to tell, later, whether
    it is still there (:func:`.store.runner_gone`)."""

    pid: int
    host: str
    #: When the process started (``psutil.Process.create_time()``): a pid the system gave
    #: to another process since has another start time.
    started: float

    @classmethod
    def this(cls) -> Runner:
        """This process."""
        import psutil

        return cls(os.getpid(), socket.gethostname(), psutil.Process().create_time())


@dataclass
class Promotion:
    """A promotion decision: which run is served from then on, and why."""

    decided: float
    pipeline: str
    #: The run served from this decision on (the candidate when promoted).
    served: str
    candidate: str | None
    previous: str | None
    promoted: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The decision as JSON-able data."""
        return asdict(self)
