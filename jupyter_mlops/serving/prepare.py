"""Raw new data through the pipeline's own preparation, so a model can score it.

A model takes the columns its notebook computed (``avg_monthly_spend``), not the raw file's;
``monitor --labels`` on raw records needs those columns. Until cells are marked as
preparation, the steps that prepare data are found from the served run: the earliest frame
(in step order) that holds every input column of the model, and the steps it comes from.
Those steps run on the new file, as a run of their own in a temporary store that never
joins the pipeline's runs; the frame they make is what the model scores. The steps used are
said in the report.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..pipeline.graph import upstream_of
from ..pipeline.spec import PipelineSpec
from ..run.records import RunRecord

__all__ = ["prepared_frame"]


def _first_frame_with(run: RunRecord, columns: list[str], labels: str
                      ) -> tuple[str, str] | None:
    """(step, variable) of the earliest frame the run saved holding ``columns`` and
    ``labels``: the end of the preparation."""
    wanted = {*columns, labels}
    for step in run.steps:
        for name, manifest in step.outputs.items():
            if manifest.get("kind") == "parquet" and wanted <= set(manifest.get("columns")
                                                                   or []):
                return step.step, name
    return None


def prepared_frame(pipeline_dir: str | Path, run: RunRecord, features: list[str],
                   data: str | Path, labels: str, parameter: str) -> tuple[Any, str]:
    """The new ``data`` prepared by the pipeline's own steps: ``(frame, note)``, where the
    frame holds the model's ``features`` and ``labels``; MlopsError when the run saved no
    such frame or the preparation fails on the new data."""
    from ..run.runner import run_pipeline
    from ..runtime.artifacts import load

    found = _first_frame_with(run, features, labels)
    if found is None:
        raise MlopsError(f"run {run.run_id} saved no frame with the model's input columns and "
                         f"`{labels}`, so the new data cannot be prepared as the pipeline "
                         "prepares it; give rows with the model's input columns, or leave out "
                         "--labels to check drift only")
    step, variable = found
    spec = PipelineSpec.read(pipeline_dir)
    steps = [s.name for s in spec.steps if s.name in upstream_of(spec, step) | {step}]
    with tempfile.TemporaryDirectory(prefix="mlops-prepare-") as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            result = run_pipeline(pipeline_dir, {parameter: str(Path(data).resolve())},
                                  store=Path(tmp) / "store.sqlite", runs_dir=tmp,
                                  only=tuple(steps), started_by="monitor")
        if result.status != "succeeded":
            raise MlopsError(f"the pipeline's steps {', '.join(steps)} failed on it "
                             f"({result.error}); give rows with the model's input columns")
        outputs = next(s for s in result.steps if s.name == step).outputs
        frame = load(variable, Path(result.folder) / "artifacts" / step,
                     sha256=outputs[variable]["sha256"])
    note = f"prepared by the pipeline's steps {', '.join(steps)} (their `{variable}`)"
    return frame, note
