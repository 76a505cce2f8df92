"""The spec a notebook's analysis gives: one step notebook per planned step, the parameters."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..notebook.analysis import Analysis, slug, step_code_hash
from .spec import PipelineSpec, Step


def build_spec(analysis: Analysis, folder: Path, allow_pickle: bool = False,
               trust: Iterable[str] = ()) -> PipelineSpec:
    """The pipeline spec for an export of ``analysis`` into ``folder`` (paths relative to it);
    ``trust`` names the types a model may need beyond the built-in trusted ones."""
    source = Path(os.path.relpath(analysis.notebook.path.resolve(), folder.resolve()))
    steps = [
        Step(
            name=plan.name,
            notebook=f"steps/{index:02d}_{plan.name}.ipynb",
            cells=[c.number for c in plan.cells],
            code_sha256=step_code_hash(analysis, plan),
            inputs=dict(plan.inputs),
            outputs=list(plan.outputs.values()),
            parameters=list(plan.parameters),
            after=list(plan.after),
        )
        for index, plan in enumerate(analysis.steps, start=1)
    ]
    return PipelineSpec(
        name=slug(analysis.notebook.path.stem) or "pipeline",
        source=source.as_posix(),
        source_sha256=analysis.notebook.sha256,
        workdir=source.parent.as_posix() or ".",
        kernel=analysis.notebook.kernelspec,
        parameters=list(analysis.parameters),
        steps=steps,
        allow_pickle=allow_pickle,
        trust=sorted(set(trust)),
        inference=analysis.inference.to_dict() if analysis.inference else None,
    )
