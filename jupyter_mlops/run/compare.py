"""Two recorded runs side by side: parameters, data fingerprints, outputs and metrics.

One comparison for every face: ``jupyter mlops runs diff A B`` renders it as text
(:func:`.runsview.runs_diff`), the server answers it as JSON for the sidebar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .records import RunRecord


@dataclass(frozen=True)
class Compared:
    """One name in two runs: its value in each, and whether it changed."""

    name: str
    #: The value in run A (None when A has none: see ``in_a``).
    a: Any
    b: Any
    #: Whether each run has the name at all.
    in_a: bool
    in_b: bool
    #: Whether the values differ, or only one run has the name.
    changed: bool
    #: For a metric both runs have: B's value minus A's; else None.
    difference: float | None = None


@dataclass
class RunComparison:
    """Runs A and B side by side; each list sorted by name."""

    a: str
    b: str
    parameters: list[Compared] = field(default_factory=list)
    #: The data files the steps read (``STEP:PATH``), by sha256.
    files: list[Compared] = field(default_factory=list)
    #: The values the steps made (``STEP.NAME``), by sha256.
    outputs: list[Compared] = field(default_factory=list)
    metrics: list[Compared] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The comparison as JSON-able data (what ``/mlops/runs/A/diff/B`` answers)."""
        return asdict(self)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _side_by_side(left: dict[str, Any], right: dict[str, Any],
                  metrics: bool = False) -> list[Compared]:
    rows = []
    for name in sorted(set(left) | set(right)):
        in_a, in_b = name in left, name in right
        a, b = left.get(name), right.get(name)
        difference = float(b) - float(a) if metrics and _number(a) and _number(b) else None
        rows.append(Compared(name, a, b, in_a, in_b, in_a != in_b or a != b, difference))
    return rows


def _files(run: RunRecord) -> dict[str, str]:
    return {f"{s.step}:{path}": digest for s in run.steps for path, digest in s.files.items()}


def _outputs(run: RunRecord) -> dict[str, str]:
    return {f"{s.step}.{name}": manifest.get("sha256", "") for s in run.steps
            for name, manifest in s.outputs.items()}


def compare_runs(a: RunRecord, b: RunRecord) -> RunComparison:
    """Parameters, data fingerprints, outputs and metrics of runs ``a`` and ``b``."""
    return RunComparison(
        a=a.run_id, b=b.run_id,
        parameters=_side_by_side(a.parameters, b.parameters),
        files=_side_by_side(_files(a), _files(b)),
        outputs=_side_by_side(_outputs(a), _outputs(b)),
        metrics=_side_by_side(a.metrics, b.metrics, metrics=True),
    )
