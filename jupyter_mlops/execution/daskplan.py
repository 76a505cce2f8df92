"""Which steps a Dask worker prepares kernels for (:mod:`.daskexec`): read from the
pipeline spec beside a step notebook, as a worker knows steps by their notebooks only.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..pipeline.graph import downstream_of
from .daskworker import Plans
from .stepexec import artifact_plan, step_plan, zygote_plan

__all__ = ["descendants", "plans_of", "spec_of", "step_name", "upcoming_after", "warm_plans"]


#: Each pipeline folder's spec as last read, with its file's bytes then: the Dask executor
#: asks for it several times per step (parsing the YAML each time cost a chain's steps
#: 0.02-0.03 s each on the runner, on the critical path, with the workers busy). Its bytes
#: tell a new export, which neither its size nor a coarse modification time need.
_SPECS: dict[Path, tuple[bytes, Any]] = {}
_SPECS_LOCK = threading.Lock()  # the runner's step threads ask at once
#: How many folders' specs are kept (a process may run many pipelines), those asked
#: for last.
KEPT = 8


def spec_of(notebook: str) -> tuple[Any, Path] | None:
    """The pipeline spec of a step notebook, and its folder; parsed again only when its
    file's bytes changed."""
    from ..pipeline.spec import SPEC_FILE, PipelineSpec, read_spec_bytes

    for folder in Path(notebook).parents:
        path = folder / SPEC_FILE
        if not path.is_file():
            continue
        try:
            content = read_spec_bytes(path)  # one byte too many: refused below
            with _SPECS_LOCK:  # the one asked for last is kept longest
                known = _SPECS.pop(folder, None)
                if known is not None and known[0] == content:
                    _SPECS[folder] = known
                    return known[1], folder
            spec = PipelineSpec.from_bytes(content, path)
        except (OSError, MlopsError):
            return None
        with _SPECS_LOCK:
            _SPECS.pop(folder, None)
            _SPECS[folder] = (content, spec)
            while len(_SPECS) > KEPT:
                del _SPECS[next(iter(_SPECS))]
        return spec, folder
    return None


def step_name(spec: Any, folder: Path, notebook: str) -> str | None:
    """The name of the step whose notebook is ``notebook`` in ``spec`` (in ``folder``)."""
    return next((s.name for s in spec.steps if str(folder / s.notebook) == notebook), None)


def upcoming_after(notebook: str, sent: set[str], expected: set[str] | None = None
                   ) -> tuple[list[str], int, set[str]]:
    """Step notebooks expected after ``notebook``, not sent yet (and among the steps named
    ``expected``, unless None): those that wait for it first, then the rest in the
    pipeline's order; how many wait for it; and those that wait for it, directly or not."""
    found = spec_of(notebook)
    if found is None:
        return [], 0, set()
    spec, folder = found
    name = step_name(spec, folder, notebook)
    later = [s for s in spec.steps if str(folder / s.notebook) not in sent
             and (expected is None or s.name in expected)]
    waiting = [s for s in later if name in s.after]
    after = waiting + [s for s in later if name not in s.after]
    below = _below(spec, name)
    return ([str(folder / s.notebook) for s in after], len(waiting),
            {str(folder / s.notebook) for s in later if s.name in below})


def descendants(notebook: str) -> set[str]:
    """The step notebooks that wait for ``notebook``'s step, directly or not."""
    found = spec_of(notebook)
    if found is None:
        return set()
    spec, folder = found
    below = _below(spec, step_name(spec, folder, notebook))
    return {str(folder / s.notebook) for s in spec.steps if s.name in below}


def _below(spec: Any, name: str | None) -> set[str]:
    """The names of the steps that wait for step ``name``, directly or not."""
    return set() if name is None else downstream_of(spec, name) - {name}


def plans_of(notebook: str) -> Plans:
    """What the kernel of a step notebook imports ahead (:func:`.stepexec.step_plan`), and
    what its zygote imports first (:func:`.stepexec.zygote_plan`)."""
    found = spec_of(notebook)
    if found is None:
        return [], []
    spec, folder = found
    name = step_name(spec, folder, notebook)
    if name is None:
        return [], []
    return step_plan(spec, folder, name), zygote_plan(spec, folder, name)


def warm_plans(notebook: str, expected: set[str] | None) -> tuple[Plans, bool]:
    """:func:`plans_of` the first step that runs, its zygote's widened with what loading and
    saving every step's artifacts imports (a model's skops), when no other step of those
    named ``expected`` could start beside it: a worker warmed up while that step runs
    elsewhere then has them imported when a later step is sent there (churn's second
    branch imported skops, 0.56 s, only once its kernel was asked for). A step that could
    start now keeps the first step's plans: its kernel would wait for the wider imports.
    With the plans, whether they were widened (the other workers have time)."""
    found = spec_of(notebook)
    name = None if found is None else step_name(*found, notebook)
    if found is None or name is None:
        return ([], []), False
    spec, folder = found
    step, zygote = step_plan(spec, folder, name), zygote_plan(spec, folder, name)
    if not zygote or expected is None:
        return (step, zygote), False
    waiting = expected | {name}
    if any(s.name in expected and s.name != name and not set(s.after) & waiting
           for s in spec.steps):
        return (step, zygote), False
    wider = list(zygote)
    for other in spec.steps:
        wider += [m for m in artifact_plan(spec, folder, other.name) if m not in wider]
    return (step, wider), True
