"""Which steps of a pipeline wait for which, directly or not: what a run selects
(``--only``, ``--from``), what serving prepares, and which kernels a Dask worker starts ahead
all walk the same ``after`` lists."""

from __future__ import annotations

from .spec import PipelineSpec

__all__ = ["downstream_of", "upstream_of"]


def upstream_of(spec: PipelineSpec, name: str) -> set[str]:
    """Every step that ``name`` waits for, directly or not."""
    seen: set[str] = set()
    todo = list(spec.step(name).after)
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo += spec.step(current).after
    return seen


def downstream_of(spec: PipelineSpec, name: str) -> set[str]:
    """Every step that waits for ``name``, directly or not, and ``name`` itself (a spec may
    list a step before one it waits for: walked until nothing is added)."""
    found = {name}
    changed = True
    while changed:
        changed = False
        for step in spec.steps:
            if step.name not in found and found & set(step.after):
                found.add(step.name)
                changed = True
    return found
