"""New records prepared as the notebook prepared its data: the prepare cells, replayed.

A pipeline whose notebook marked cells ``prepare`` has an inference plan in
``pipeline.yaml`` (:mod:`jupyter_mlops.notebook.inference`). :func:`load_preparation` makes it
ready for one served run: the setup cells and helper functions run once, the values the
cells read from earlier steps (a list of feature names, an encoder) are loaded from that
run's artifacts (hash verified, never refitted), and its parameters bound. Then
:meth:`Preparation.apply` runs the prepare cells on a frame of raw records, in this
process, and says which records the preparation dropped (a ``dropna``), by number.

The records are checked first against the profile of the frame they stand for (the input
step's artifact of the served run), with the same 422 rules as the model's inputs: a column
the preparation or the model needs must be there; others may be left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..notebook.inference import InferencePlan
from ..pipeline.spec import PipelineSpec
from ..run.records import RunRecord

__all__ = ["Preparation", "PrepareError", "load_preparation", "RECORD"]

#: The column that numbers the records through the preparation, to tell which were dropped.
RECORD = "__mlops_record__"


class PrepareError(MlopsError):
    """A prepare cell raised on the records: which cell, which record if one can be named."""

    def __init__(self, message: str, cell: int, record: int | None = None) -> None:
        super().__init__(message)
        self.cell_number = cell
        self.record = record


class _NoKernel:
    """``get_ipython()`` in replayed setup code (``%matplotlib inline`` became a call):
    there is no kernel; every magic is a no-op."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


@dataclass
class Preparation:
    """One run's preparation, ready to apply to frames of raw records."""

    plan: InferencePlan
    run_id: str
    #: The profile entries of the frame records stand for (name, kind, dtype, nulls, ...).
    columns: list[dict[str, Any]]
    #: Columns a record must hold: those the cells name and the model's raw inputs.
    required: list[str]
    #: The namespace the cells start from: setup, helpers, fitted values, parameters.
    base: dict[str, Any] = field(repr=False, default_factory=dict)

    def apply(self, frame: Any) -> tuple[Any, list[int]]:
        """``(prepared frame, numbers of the records the preparation dropped)``.

        PrepareError names the cell that raised (and the record, when the frame held one)."""
        frame = frame.copy()
        frame[RECORD] = range(len(frame))
        try:
            namespace = self._run(frame)
        except PrepareError as err:
            if len(frame) == 1:
                err.record = 0
            elif len(frame) <= BLAME_LIMIT:
                err.record = self._blame(frame)
            raise
        out = namespace.get(self.plan.output)
        if out is None or not hasattr(out, "columns"):
            raise PrepareError(f"after the prepare cells, `{self.plan.output}` is not a frame",
                               self.plan.cells[-1]["cell"])
        if RECORD in out.columns:
            kept = set(out[RECORD].tolist())
            out = out.drop(columns=[RECORD])
        elif len(out) == len(frame):
            kept = set(range(len(frame)))
        else:
            raise PrepareError(f"the prepare cells dropped {len(frame) - len(out)} of "
                               f"{len(frame)} records and their columns do not say which",
                               self.plan.cells[-1]["cell"])
        return out, [i for i in range(len(frame)) if i not in kept]


    def _run(self, frame: Any) -> dict[str, Any]:
        """The namespace after the prepare cells ran on ``frame``; PrepareError naming the
        cell that raised."""
        namespace = dict(self.base)
        namespace[self.plan.input] = frame
        for cell in self.plan.cells:
            try:
                exec(compile(cell["code"], f"<prepare cell {cell['cell']}>", "exec"), namespace)
            except Exception as err:  # the user's code, on data it was not written for
                first = (str(err).splitlines() or [""])[0]
                raise PrepareError(f"prepare cell {cell['cell']} raised {type(err).__name__}"
                                   f"{': ' + first if first else ''}", cell["cell"]) from None
        return namespace

    def _blame(self, frame: Any) -> int | None:
        """The first record the cells raise on alone (None if each passes alone)."""
        for index in range(len(frame)):
            try:
                self._run(frame.iloc[[index]].copy())
            except PrepareError:
                return index
        return None


#: A request of up to this many records whose preparation raised is tried record by record
#: to name the record that makes it raise; a bigger one is named by its range.
BLAME_LIMIT = 200


def _artifact(run: RunRecord, step: str, name: str) -> Any:
    from ..runtime.artifacts import load

    record = next((s for s in run.steps if s.step == step), None)
    manifest = record.outputs.get(name) if record else None
    if manifest is None:
        raise MlopsError(f"run {run.run_id} saved no `{name}` in step `{step}`, which the "
                         "prepare cells read; run the pipeline again")
    return load(name, Path(run.folder) / "artifacts" / step, recorded=manifest)


def _base(plan: InferencePlan, run: RunRecord) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "__mlops_prepare__", "get_ipython": _NoKernel}
    for part in plan.setup:
        try:
            exec(compile(part["code"], f"<setup cell {part['cell']}>", "exec"), namespace)
        except Exception as err:
            raise MlopsError(f"setup cell {part['cell']}, replayed to prepare records, raised "
                             f"{type(err).__name__}: {err}") from None
    for name, code in plan.replay.items():
        exec(compile(code, f"<{name}>", "exec"), namespace)
    for name, step in plan.fitted.items():
        namespace[name] = _artifact(run, step, name)
    for name in plan.parameters:
        namespace[name] = run.parameters.get(name)
    return namespace


def _raw_columns(run: RunRecord, plan: InferencePlan) -> list[dict[str, Any]]:
    from .model import data_profiles

    for step, name, profile in data_profiles(run, every_frame=True):
        if (step, name) == (plan.input_step, plan.input):
            return [c for c in profile["columns"] if c["name"] != RECORD]
    raise MlopsError(f"run {run.run_id} saved no `{plan.input}` from step "
                     f"`{plan.input_step}`, the frame new records stand for; run the pipeline "
                     "again")


def load_preparation(pipeline_dir: str | Path, run: RunRecord,
                     model_columns: list[str]) -> Preparation | None:
    """The preparation of the pipeline's current ``pipeline.yaml`` for ``run``, or None when
    the notebook marked no cell prepare."""
    spec = PipelineSpec.read(pipeline_dir)
    if spec.inference is None:
        return None
    plan = InferencePlan.from_dict(spec.inference)
    columns = _raw_columns(run, plan)
    names = [c["name"] for c in columns]
    wanted = set(plan.columns) | set(model_columns)
    return Preparation(plan=plan, run_id=run.run_id, columns=columns,
                       required=[n for n in names if n in wanted], base=_base(plan, run))
