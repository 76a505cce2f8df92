"""Which steps a run executes: all, ``--only STEP``, or ``--from STEP`` onwards.

Every step gets a mode: ``run`` (unless its key is cached), ``force`` (run even if cached),
``reuse`` (must come from the store: it is upstream of what was asked for), or ``skip``.
"""

from __future__ import annotations

from ..errors import OptionError
from ..pipeline.graph import downstream_of, upstream_of
from ..pipeline.spec import PipelineSpec

RUN, FORCE, REUSE, SKIP = "run", "force", "reuse", "skip"


def select(spec: PipelineSpec, only: list[str] | None = None, start: str | None = None,
           force: set[str] | None = None) -> dict[str, str]:
    """The mode of every step (see the module docstring)."""
    force = force or set()
    if only and start:
        raise OptionError("choose the steps to run by name or by the first one, not both",
                          option="only")
    for name in [*(only or []), *([start] if start else []), *(force - {"*"})]:
        spec.step(name)  # an unknown name is refused before anything runs
    if only:
        chosen = set(only)
    elif start:
        chosen = downstream_of(spec, start)
    else:
        return {s.name: FORCE if "*" in force or s.name in force else RUN for s in spec.steps}
    needed = set().union(*(upstream_of(spec, n) for n in chosen)) - chosen
    modes = {}
    for step in spec.steps:
        if step.name in chosen:
            modes[step.name] = FORCE
        elif step.name in needed:
            modes[step.name] = REUSE
        else:
            modes[step.name] = SKIP
    return modes
