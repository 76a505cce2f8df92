"""Which of the served run's frames new data is compared with: like with like.

New data can be raw records (what the pipeline's first step reads) or model-input rows
(what the model was fitted on); comparing raw data with a cleaned frame reports the
cleaning as drift (NaN in the file, "Unknown" after the clean step). So the reference is
chosen by columns: of the run's frames, the one whose columns are most like the new data's
(Jaccard similarity of the two column sets), the earlier step first on a tie, and a training
frame before a test frame; ``--stage STEP`` picks among one step's frames. The choice and
its figures are part of the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import MlopsError
from ..run.records import RunRecord
from .model import data_profiles

__all__ = ["Reference", "choose_reference"]


@dataclass
class Reference:
    """The frame new data is compared with, and why it was chosen."""

    step: str
    variable: str
    profile: dict[str, Any]
    #: "raw input", "model input" or "intermediate"
    stage: str
    #: The figures of the choice, for the report: shared columns and similarity.
    why: str


def _stage(index: int, columns: set[str], features: set[str]) -> str:
    if features and columns == features:
        return "model input"
    if index == 0:
        return "raw input"
    return "intermediate"


def choose_reference(run: RunRecord, columns: list[str], *, stage: str | None = None,
                     features: list[str] | None = None) -> Reference:
    """The frame of ``run`` most like new data with ``columns`` (see the module's rule);
    ``stage`` names a step to choose among its frames only; ``features`` are the model's
    input columns, to name a model-input frame as such."""
    frames = [f for f in data_profiles(run, every_frame=True) if f[2].get("kind") != "Series"]
    if stage is not None:
        steps = list(dict.fromkeys(s.step for s in run.steps))
        if stage not in steps:
            raise MlopsError(f"--stage {stage}: run {run.run_id} has no step `{stage}`; its "
                             f"steps are {', '.join(steps)}")
        chosen = [f for f in frames if f[0] == stage]
        if not chosen:
            raise MlopsError(f"--stage {stage}: step `{stage}` of run {run.run_id} saved no "
                             "data frame; choose a step that outputs one")
    else:
        chosen = frames
    new = set(columns)
    wanted = set(features or [])
    best: tuple[tuple[float, int, bool, int], int, tuple[str, str, dict[str, Any]]] | None = None
    for index, frame in enumerate(frames):
        if frame not in chosen:
            continue
        have = {c["name"] for c in frame[2]["columns"]}
        shared = len(have & new)
        if not shared:
            continue
        similarity = shared / len(have | new)
        rank = (similarity, shared, "train" in frame[1].lower(), -index)
        if best is None or rank > best[0]:
            best = (rank, index, frame)
    if best is None:
        raise MlopsError(f"the new data shares no column with any data frame of run "
                         f"{run.run_id}; its columns are {', '.join(columns[:10])}")
    (similarity, shared, _, _), index, (step, name, profile) = best
    have = {c["name"] for c in profile["columns"]}
    kind = _stage(index, have, wanted)
    why = (f"{shared} of the new data's {len(new)} columns shared with `{name}`'s {len(have)} "
           f"(similarity {similarity:.2f})" + (f", among step {stage}'s frames" if stage
                                               else ""))
    return Reference(step, name, profile, kind, why)
