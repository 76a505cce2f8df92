"""The run store's records, typed: a run, its steps, and promotion decisions.

The store reads its rows into these and writes them from these; the views, lineage, serving,
monitoring and the sidebar read their attributes. ``to_dict`` gives the JSON that
``runs --json`` prints (the same keys as the store's columns).
"""

from __future__ import annotations

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
