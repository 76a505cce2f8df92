"""Building one step's notebook: parameters, setup, inputs, the step's code, outputs.

Every step notebook stays runnable with plain papermill: its first code cell is tagged
``parameters``, and the two runtime parameters say where artifacts live.
"""

from __future__ import annotations

from typing import Any

from ..notebook.analysis import Analysis, StepPlan
from ..notebook.reader import Cell
from ..notebook.roles import Mark
from .quoting import python_comment, python_literal
from .spec import Parameter, PipelineSpec, Step

#: Runtime parameters every step notebook has besides the pipeline's own.
ARTIFACTS_PARAMETER = "mlops_artifacts"
HASHES_PARAMETER = "mlops_input_hashes"
PIPELINE_PARAMETER = "mlops_pipeline"
STEP_PARAMETER = "mlops_step"
DRIFT_PARAMETER = "mlops_fail_on_drift"
#: Roles whose magic stays in the step notebook, where it checks instead of capturing.
CHECKED_ROLES = ("data", "metrics")
_OUR_TAGS = ("mlops:", "parameters", "injected-parameters", "step:", "block:", "prev:",
             "pipeline-parameters", "pipeline-metrics", "imports", "functions")
#: The id of a step notebook's cell that holds one of the step's own code cells, by the
#: number of that cell in the source notebook; its metadata says the number too
#: (``mlops.source_cell``), as setup cells' do.
STEP_CELL_ID = "mlops-cell-{}"


def parameters_source(parameters: list[Parameter], step_name: str = "") -> str:
    """The parameters cell: ``name: type = default  # help`` lines papermill can inspect."""
    lines = ["# Parameters: papermill (and `jupyter mlops run -p NAME=VALUE`) override these."]
    for parameter in parameters:
        annotation = "" if parameter.type == "None" else f": {parameter.type}"
        comment = f"  # {python_comment(parameter.help)}" if parameter.help else ""
        lines.append(f"{parameter.name}{annotation} = {python_literal(parameter.default)}"
                     f"{comment}")
    lines.append(f'{ARTIFACTS_PARAMETER}: str = "artifacts"  # folder of the run\'s artifacts')
    lines.append(f"{HASHES_PARAMETER}: dict = {{}}  # sha256 of each input, checked on load")
    lines.append(f'{PIPELINE_PARAMETER}: str = ""  # pipeline folder: when set, data and '
                 "metric cells check the contract")
    lines.append(f"{STEP_PARAMETER}: str = {python_literal(step_name)}  # this step's name")
    lines.append(f"{DRIFT_PARAMETER}: bool = False  # fail the step when its data drifted")
    return "\n".join(lines)


def _magic_line(mark: Mark, line_form: bool) -> str:
    parts = [mark.role, *mark.variables]
    parts += [f"--min {n}={python_literal(v)}" for n, v in mark.minimums]
    parts += [f"--max {n}={python_literal(v)}" for n, v in mark.maximums]
    return ("%mlops " if line_form else "%%mlops ") + " ".join(parts)


def _step_code(cell: Cell) -> str:
    """A cell's code in its step: data and metric cells keep (or get) their magic."""
    if cell.mark is None or cell.role not in CHECKED_ROLES:
        return cell.code
    if not cell.code.strip():  # IPython refuses a cell magic with nothing under it
        return _magic_line(cell.mark, True)
    if cell.mark.spelling == "magic":
        return cell.source
    return _magic_line(cell.mark, False) + "\n" + cell.code


def _code_cell(nbf: Any, source: str, cell_id: str, tags: list[str] | None = None,
               origin: int | None = None) -> Any:
    metadata: dict[str, Any] = {}
    if tags:
        metadata["tags"] = tags
    if origin is not None:
        metadata["mlops"] = {"source_cell": origin}
    cell = nbf.new_code_cell(source, metadata=metadata)
    cell["id"] = cell_id
    return cell


def source_cell(cell: Any) -> int | None:
    """The number in the source notebook (1-based, as JupyterLab counts) of the cell a step
    notebook's ``cell`` was made from; None for a cell export generated."""
    origin = ((cell.get("metadata") or {}).get("mlops") or {}).get("source_cell")
    return origin if isinstance(origin, int) and not isinstance(origin, bool) else None


def is_step_cell(cell: Any) -> bool:
    """Whether a step notebook's ``cell`` is one of the step's own code cells: not a setup
    cell (made from the source notebook too, but shared by every step), not generated."""
    return (cell.get("cell_type") == "code" and source_cell(cell) is not None
            and str(cell.get("id", "")) == STEP_CELL_ID.format(source_cell(cell)))


def step_cells(notebook: Any) -> list[int]:
    """The source notebook's numbers of a step notebook's own code cells, in order: what a
    run's progress counts (``cell 2 of 3``), leaving out setup and generated cells."""
    return [source_cell(c) or 0 for c in notebook.get("cells", []) if is_step_cell(c)]


def runtime_source(protocol: int) -> str:
    """The cell that checks, first, that the kernel has a runtime speaking ``protocol``."""
    fix = ("this kernel has no jupyter-mlops runtime; install it without changing this "
           "environment's versions with `jupyter mlops kernel {}`, or run the pipeline in "
           "a kernel that has it (--kernel NAME)")
    return (f"# The jupyter-mlops runtime this step needs in its kernel (protocol {protocol}).\n"
            "try:\n"
            "    from jupyter_mlops.runtime import require_protocol\n"
            "except ImportError:\n"
            "    import sys\n"
            f"    raise ImportError({python_literal(fix)}.format(sys.executable)) from None\n"
            f"require_protocol({python_literal(protocol)})")


def _trust(spec: PipelineSpec) -> str:
    """The ``trusted=`` argument of the artifact calls, when the author trusts extra types."""
    return f", trusted={python_literal(list(spec.trust))}" if spec.trust else ""


def build_step_notebook(analysis: Analysis, plan: StepPlan, step: Step,
                        spec: PipelineSpec) -> Any:
    """The nbformat notebook for ``step``."""
    import nbformat.v4 as nbf

    nb = nbf.new_notebook()
    nb.metadata["kernelspec"] = dict(spec.kernel)
    language_info = analysis.notebook.metadata.get("language_info")
    if language_info:
        nb.metadata["language_info"] = language_info
    nb.metadata["mlops"] = {"pipeline": spec.name, "step": step.name, "source": spec.source}
    cells = [c.number for c in plan.cells]
    span = f"cell {cells[0]}" if len(cells) == 1 else f"cells {cells[0]}-{cells[-1]}"
    header = nbf.new_markdown_cell(
        f"# Step `{step.name}` of pipeline `{spec.name}`\n\n"
        f"Generated by jupyter-mlops from `{analysis.notebook.name}` ({span}). "
        "Edit the source notebook and export again rather than editing this file."
    )
    header["id"] = "mlops-header"
    nb.cells.append(header)

    by_name = {p.name: p for p in spec.parameters}
    nb.cells.append(_code_cell(nbf, parameters_source([by_name[n] for n in step.parameters],
                                                      step.name),
                               "mlops-parameters", ["parameters"]))
    nb.cells.append(_code_cell(nbf, runtime_source(spec.runtime_protocol), "mlops-runtime",
                               ["mlops-setup"]))
    for index, cell in enumerate(analysis.setup):
        nb.cells.append(_code_cell(nbf, cell.code, f"mlops-setup-{index}", ["mlops-setup"],
                                   cell.number))
    if any(c.role in CHECKED_ROLES for c in plan.cells):
        nb.cells.append(_code_cell(
            nbf, "# The %%mlops magics check this step's data and metrics against the "
            "notebook's.\n_ = get_ipython().extension_manager.load_extension('jupyter_mlops')",
            "mlops-load-extension", ["mlops-setup"]))
    if plan.replay:
        source = "# Imports and definitions made in earlier steps of the notebook.\n"
        source += "\n".join(plan.replay.values())
        nb.cells.append(_code_cell(nbf, source, "mlops-replay", ["mlops-replay"]))
    if step.inputs:
        lines = ["# Inputs made by earlier steps; each file's sha256 is checked before it is used.",
                 "from jupyter_mlops.runtime.artifacts import load_inputs", ""]
        producers = sorted(set(step.inputs.values()), key=[s.name for s in spec.steps].index)
        for producer in producers:
            names = sorted(n for n, p in step.inputs.items() if p == producer)
            hashes = ", ".join(f"{python_literal(n)}: {HASHES_PARAMETER}.get("
                               f"{python_literal(n)}, '')" for n in names)
            lines.append(f"load_inputs(globals(), {{{hashes}}}, f\"{{{ARTIFACTS_PARAMETER}}}/"
                         f"{producer}\", allow_pickle={python_literal(spec.allow_pickle)}"
                         f"{_trust(spec)})")
        nb.cells.append(_code_cell(nbf, "\n".join(lines), "mlops-inputs", ["mlops-inputs"]))

    markdown = {c.index: c for c in plan.markdown}
    for cell in sorted(plan.cells + plan.markdown, key=lambda c: c.index):
        if cell.index in markdown:
            md = nbf.new_markdown_cell(cell.source)
            md["id"] = f"mlops-md-{cell.number}"
            nb.cells.append(md)
            continue
        tags = list(dict.fromkeys(t for t in cell.tags if not t.startswith(_OUR_TAGS)))
        nb.cells.append(_code_cell(nbf, _step_code(cell), STEP_CELL_ID.format(cell.number),
                                   tags, cell.number))

    if step.outputs:
        outputs = python_literal([{"name": o.name, "role": o.role, "required": o.required}
                                  for o in step.outputs])
        nb.cells.append(_code_cell(
            nbf,
            "# Outputs of this step, saved for the steps after it.\n"
            "from jupyter_mlops.runtime.artifacts import save_outputs\n\n"
            f"mlops_saved = save_outputs(globals(), {outputs}, f\"{{{ARTIFACTS_PARAMETER}}}/"
            f"{step.name}\", "
            f"allow_pickle={python_literal(spec.allow_pickle)}, "
            f"step={python_literal(step.name)}{_trust(spec)})",
            "mlops-outputs", ["mlops-outputs"]))
    return nb
