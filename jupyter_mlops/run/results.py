"""The record of a run as it goes: each step's state, and the run's, as in ``run.json``."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import RunStore

RUN_FILE = "run.json"
#: What a step that has not finished says (the runner may be gone before it could say more).
UNFINISHED = ("pending", "running")
#: How a run's record says it ended.
ENDED = ("succeeded", "failed", "cancelled")


@dataclass
class StepResult:
    """The state of one step in a run."""

    name: str
    #: pending, running, done, failed, not run (a failure stopped the run first), skipped,
    #: cancelled (the run was cancelled before the step finished)
    status: str = "pending"
    started: float | None = None
    ended: float | None = None
    notebook: str = ""
    error: str | None = None
    #: The step's own code cell that runs, or ran last (1-based), of how many: the cells of
    #: the source notebook that make the step, not its setup or generated cells.
    cell: int | None = None
    cells: int | None = None
    #: The source notebook's number (1-based, as JupyterLab counts) of the cell that runs,
    #: or of the cell a failed step failed in; None in a generated cell and once done.
    source_cell: int | None = None
    #: A failed step's cell in the source notebook; None when it failed in a generated cell.
    error_cell: int | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: What the step's data and metric cells checked (schema, drift, thresholds).
    checks: list[dict[str, Any]] = field(default_factory=list)
    #: While it runs: the cell of the step notebook papermill is on (1-based), of how many
    #: (markdown and generated cells included).
    cell_index: int | None = None
    cell_total: int | None = None
    cache_key: str | None = None
    #: sha256 of each data file the step's code or parameters name.
    files: dict[str, str] = field(default_factory=dict)
    #: The run whose outputs this step reused instead of running, if any.
    cached_from: str | None = None

    def where(self) -> str:
        """Where a running step is, in the author's words: ``cell 3 of 4 (notebook cell
        26)``, or ``setting up`` in the cells the export generated."""
        if self.cell is None or self.cells is None:
            return f"cell {self.cell_index} of {self.cell_total}"
        if self.source_cell is None:
            return f"between its cells (cell {self.cell} of {self.cells} ran last)"
        return f"cell {self.cell} of {self.cells} (notebook cell {self.source_cell})"

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


def cell_tracker(state: StepResult, notebook: Path,
                 tell: Callable[[StepResult], None]) -> Callable[[int, int, Any], None]:
    """A listener of papermill's cells (``on_cell(index, total, cell)``) that keeps ``state``
    on the cell that runs, then calls ``tell(state)``: the cell of the step notebook
    (``notebook``, generated cells included), and which of the step's own cells it is in
    the source notebook (:func:`~..pipeline.stepnotebook.step_cells`: ``cell 3 of 4``,
    ``source_cell`` 26), so progress counts the cells the author wrote."""
    from ..pipeline.stepnotebook import is_step_cell, source_cell, step_cells

    try:
        own = step_cells(json.loads(notebook.read_text(encoding="utf-8")))
    except (OSError, ValueError):  # papermill will say what is wrong with it
        own = []
    state.cells = len(own)

    def on_cell(index: int, total: int, cell: Any) -> None:
        state.cell_index, state.cell_total = index + 1, total
        state.source_cell = source_cell(cell)
        if is_step_cell(cell) and state.source_cell in own:
            state.cell = own.index(state.source_cell) + 1
        tell(state)

    return on_cell


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def cancel_record(data: dict[str, Any], reason: str) -> bool:
    """Make ``data`` (a ``run.json``) say how a cancel ended the run: the run, and each step
    it had not finished, ``cancelled``; False (nothing changed) when the run ended otherwise
    first (a run that succeeded as the cancel came stays succeeded) or already says so."""
    changed = False
    if data.get("status") in ("starting", "running", "failed"):
        data["status"], changed = "cancelled", True
        data["error"] = data.get("error") or reason
    if data.get("status") != "cancelled":
        return False
    now = time.time()
    data["ended"] = data.get("ended") or now
    for step in data.get("steps") or []:
        if isinstance(step, dict) and step.get("status") in UNFINISHED:
            step["status"], changed = "cancelled", True
            step["ended"] = step.get("ended") or (now if step.get("started") else None)
    return changed


def finish_cancelled(folder: Path, store: RunStore, reason: str,
                     unrecorded: Callable[[], RunResult]) -> None:
    """Make final the record of a cancelled run whose runner has ended, whatever moment it
    was stopped at: killed before its record said ``cancelled`` (its steps may still say
    ``running``), or before it had a record (``unrecorded()`` makes the run's first, and
    records it in ``store``). ``run.json`` and ``store`` then agree: the run and every step
    it had not finished are ``cancelled`` (:func:`cancel_record`), unless the store says
    the run ended otherwise first."""
    from ..errors import MlopsError
    from ..runtime._files import atomic_write

    record = folder / RUN_FILE
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except FileNotFoundError:  # the runner was stopped before it wrote one
        data = None
    except (OSError, ValueError):  # damaged: the server says so when it is read
        return
    try:
        stored = store.run(folder.name)
    except MlopsError:
        stored = None
    if stored is not None and stored.run_id != folder.name:  # another run's id holds it
        stored = None
    if data is None:
        data = (unrecorded() if stored is None else RunResult(
            stored.run_id, folder, stored.pipeline, stored.parameters,
            [StepResult(s.step, s.status, s.started, s.ended) for s in stored.steps],
            "running", stored.started)).to_dict()
    if not isinstance(data, dict):
        return
    # killed between its end in the store and in run.json: the store's end is the run's
    copied = stored is not None and stored.status in ENDED and data.get("status") in (
        "starting", "running")
    if copied and stored is not None:
        data.update(status=stored.status, error=stored.error, ended=stored.ended)
        ends = {s.step: s.status for s in stored.steps}
        for step in data.get("steps") or []:
            if isinstance(step, dict):
                step["status"] = ends.get(str(step.get("name")), step.get("status"))
    if not cancel_record(data, reason) and not copied:
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(record, json.dumps(data, indent=1, default=str))
    if data.get("status") != "cancelled":
        return
    for step in data.get("steps") or []:
        if isinstance(step, dict) and step.get("status") == "cancelled":
            store.mark_step(folder.name, str(step.get("name")), "cancelled", step.get("started"))
    store.finish_run(folder.name, "cancelled", data.get("error"))
