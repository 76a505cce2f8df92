"""``%mlops status``: the pipeline as the saved notebook gives it, and the kernel state it hides.

A notebook that works in a long-lived kernel can fail as a pipeline: a variable made by a
cell that was deleted since, cells run out of order, a cell edited after it ran. The kernel
knows its own namespace and history, so the checks run here, against the notebook as saved
on disk (what an export reads).
"""

from __future__ import annotations

import itertools
import shlex
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError, Problem
from ..notebook.reader import Cell, SourceNotebook, read_notebook

if TYPE_CHECKING:
    from ..notebook.analysis import Analysis

#: Marks an analysis warning that :func:`hidden_state` says better (it names every cell).
_ANALYSIS_ORDER_WARNING = "(execution counts "


def _normal(code: str) -> str:
    """Code without trailing spaces and surrounding blank lines, as IPython's history keeps it."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines())


def _transformed(code: str) -> str:
    """``code`` as IPython turns it into Python (``In`` holds this form)."""
    if not any(ch in code for ch in "%!?"):
        return code
    from IPython.core.inputtransformer2 import TransformerManager

    try:
        return TransformerManager().transform_cell(code)
    except Exception:  # IPython's transformers raise SyntaxError and friends on broken input
        return code


def _pipeline_cells(notebook: SourceNotebook) -> list[Cell]:
    """Code cells with code that the pipeline keeps (skipped cells are left out of it)."""
    return [c for c in notebook.cells
            if c.cell_type == "code" and c.source.strip() and c.role != "skip"]


def _uses_and_defines(notebook: SourceNotebook) -> tuple[dict[str, list[int]], set[str]]:
    """Names each cell reads (name -> the cells reading it), and every name any cell binds."""
    from ..notebook.names import cell_names

    used: dict[str, list[int]] = {}
    defined: set[str] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code" or not cell.python.strip():
            continue
        try:
            names = cell_names(cell.python)
        except (SyntaxError, ValueError, RecursionError):
            continue  # the analysis reports it
        defined.update(names.defines)
        if cell.role == "skip":
            continue
        marked = list(cell.mark.variables) if cell.mark else []
        for name in dict.fromkeys(names.uses + names.late_uses + marked):
            used.setdefault(name, []).append(cell.number)
    return used, defined


def _ignored(name: str, value: Any) -> bool:
    """IPython's own names, private names and modules: never hidden state."""
    from ..notebook.analysis import KERNEL_NAMES

    return name.startswith("_") or name in KERNEL_NAMES or isinstance(value, types.ModuleType)


def _cells_text(numbers: list[int]) -> str:
    return ("cell " if len(numbers) == 1 else "cells ") + ", ".join(map(str, numbers))


def hidden_state(notebook: SourceNotebook | str | Path, namespace: Mapping[str, Any],
                 history: Iterable[str] | None = None) -> list[Problem]:
    """Warnings about kernel state the saved notebook does not reproduce.

    ``namespace`` is the kernel's (``shell.user_ns``) and ``history`` the code it ran by
    execution count (``In``; raw cells match too): names the pipeline needs that only the
    kernel has, cells that ran out of order, and cells whose saved code is not the code that
    ran.
    """
    nb = notebook if isinstance(notebook, SourceNotebook) else read_notebook(notebook)
    problems: list[Problem] = []
    used, defined = _uses_and_defines(nb)
    for name, cells in used.items():
        if name in defined or name not in namespace or _ignored(name, namespace[name]):
            continue
        problems.append(Problem(
            f"`{name}` exists in the kernel but no cell of {nb.name} defines it ("
            f"{_cells_text(cells)} {'uses' if len(cells) == 1 else 'use'} it): the exported "
            "pipeline would fail with NameError; add the cell that makes it", cells[0],
            "warning"))

    ran = [c for c in _pipeline_cells(nb) if isinstance(c.execution_count, int)]
    for earlier, later in itertools.pairwise(ran):
        if later.execution_count < earlier.execution_count:  # type: ignore[operator]
            problems.append(Problem(
                f"{nb.name}, cell {later.number} ran before cell {earlier.number} above it "
                f"(execution counts {later.execution_count} < {earlier.execution_count}): the "
                "pipeline runs top to bottom; restart the kernel and run all to check it works",
                later.number, "warning"))

    if history is not None:
        entries = [h for h in history if isinstance(h, str)]
        known = {_normal(h) for h in entries}
        for cell in ran:
            # a count beyond this kernel's history was saved by an earlier kernel
            if cell.execution_count >= len(entries):  # type: ignore[operator]
                continue
            if _normal(cell.source) in known or _normal(_transformed(cell.source)) in known:
                continue
            problems.append(Problem(
                f"{nb.name}, cell {cell.number} was edited after it ran: the kernel holds what "
                "the old code made; run the cell again before you trust or export the results",
                cell.number, "warning"))
    return sorted(problems, key=lambda p: p.cell or 0)


def kernel_namespace(shell: Any) -> dict[str, Any]:
    """The user's names, without those IPython put there itself (as ``%who`` does)."""
    hidden = getattr(shell, "user_ns_hidden", {}) or {}
    missing = object()
    return {k: v for k, v in shell.user_ns.items() if hidden.get(k, missing) is not v}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # arrays and frames compare element-wise
        return False


def notebook_argument(shell: Any, args: str, command: str = "status") -> Path:
    """The notebook ``%mlops COMMAND [NOTEBOOK]`` is about: the one named, else this kernel's."""
    words = shlex.split(args)
    if len(words) > 1 or (words and not words[0].endswith(".ipynb")):
        raise MlopsError(f"`%mlops {command} {args}`: name at most one notebook, e.g. "
                         f"`%mlops {command} churn.ipynb`")
    from .kernel import current_notebook

    path = Path(words[0]) if words else current_notebook(shell)
    if not path.is_file():
        raise MlopsError(f"cannot find the notebook {path}; name it, e.g. `%mlops {command} "
                         "path/to/notebook.ipynb`, or set JUPYTER_MLOPS_NOTEBOOK")
    return path


def all_problems(analysis: Analysis, namespace: Mapping[str, Any] | None,
                 history: Iterable[str] | None) -> list[Problem]:
    """The analysis' problems and, given a namespace, the hidden state, in cell order."""
    problems = list(analysis.problems)
    if namespace is not None:  # the kernel's side first: it explains the analysis' errors
        problems = hidden_state(analysis.notebook, namespace, history) + [
            p for p in problems if _ANALYSIS_ORDER_WARNING not in p.message]
    return sorted(problems, key=lambda p: p.cell or 0)  # in the order a reader meets them


def status_lines(path: str | Path, namespace: Mapping[str, Any],
                 history: Iterable[str] | None = None) -> list[str]:
    """What ``%mlops status`` prints for the notebook saved at ``path``."""
    from ..pipeline.export import plan
    from ..run.report import cell_span

    analysis, spec = plan(path)
    name = Path(path).name
    lines = [f"jupyter-mlops status of {name}, as saved on disk (save the notebook to include "
             "edits you have not saved)"]
    lines.append(f"Steps ({len(spec.steps)}):")
    for index, step in enumerate(spec.steps, start=1):
        extra = [f"inputs {', '.join(f'{n} (from {p})' for n, p in step.inputs.items())}"
                 if step.inputs else "",
                 f"outputs {', '.join(o.name for o in step.outputs)}" if step.outputs else "",
                 f"params {', '.join(step.parameters)}" if step.parameters else ""]
        lines.append(f"  {index}. {step.name} ({cell_span(step.cells)})"
                     + "".join(f"; {e}" for e in extra if e))
    lines.append("Parameters:" if spec.parameters else "Parameters: none")
    for p in spec.parameters:
        now = namespace.get(p.name, p.default)
        differs = "" if _same(now, p.default) else f" (the kernel has {now!r:.60})"
        lines.append(f"  {p.name}: {p.type} = {p.default!r}{differs}")
    problems = all_problems(analysis, namespace, history)
    lines.append("Problems:" if problems else "Problems: none found")
    lines += [f"  {p.severity}: {p.message}" for p in problems]
    return lines


def show_status(shell: Any, args: str) -> None:
    """``%mlops status [NOTEBOOK]``: print steps, parameters and problems, one per line.

    Reads the notebook as saved on disk; raises :class:`MlopsError` (the magic prints it)
    when there is no notebook to read.
    """
    path = notebook_argument(shell, args)
    history = list(shell.user_ns.get("In") or [])
    try:
        lines = status_lines(path, kernel_namespace(shell), history)
    except MlopsError:
        raise
    except Exception as err:  # a bug of ours must not show the user a traceback
        raise MlopsError(f"could not work out the status of {path.name} ({type(err).__name__}: "
                         f"{err}); please report this") from None
    print("\n".join(lines))
