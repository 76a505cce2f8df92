"""From a read notebook to a step graph: steps, their inputs and outputs, and problems.

Pure functions, no I/O. Cells are walked in notebook order, as "Run All" would run them; the
latest binding of each name decides which step a later step takes it from.
"""

from __future__ import annotations

import builtins
import hashlib
import itertools
import re
from dataclasses import dataclass, field

from ..errors import Problem
from .inference import InferencePlan, plan_inference, suggest_prepare
from .names import CellNames, cell_names
from .params import Parameter, parse_params_cell
from .reader import Cell, SourceNotebook, normalised_python
from .roles import OUTPUT_ROLES

#: Names every kernel has without a cell defining them.
KERNEL_NAMES = frozenset(dir(builtins)) | {
    "get_ipython", "display", "In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii",
    "_iii", "_ih", "_oh", "_dh", "__name__", "__builtins__", "__doc__", "__spec__",
    "__loader__", "__package__",
}
SETUP, PARAMS = "<setup>", "<params>"
_CODE_KINDS = frozenset({"import", "def", "class"})


@dataclass
class Output:
    """A variable a step saves as an artifact when it ends."""

    name: str
    role: str = "value"
    #: A variable named by a mark or needed downstream must exist; one that a mark found by
    #: itself (``%%mlops data`` with no names) is saved only if it has a supported type.
    required: bool = True


@dataclass
class StepPlan:
    """A step as the analysis found it."""

    name: str
    cells: list[Cell] = field(default_factory=list)
    #: Markdown cells that belong to the step, kept for the step notebook's readers.
    markdown: list[Cell] = field(default_factory=list)
    first_cell: int = 0
    explicit_after: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    parameters: list[str] = field(default_factory=list)
    #: Imports and function/class definitions from other steps, replayed before the code.
    replay: dict[str, str] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)


@dataclass
class Analysis:
    """What the notebook becomes, and what stands in the way."""

    notebook: SourceNotebook
    steps: list[StepPlan]
    setup: list[Cell]
    parameters: list[Parameter]
    skipped: list[Cell]
    problems: list[Problem]
    #: The prepare cells replayed on new records, when cells are marked prepare.
    inference: InferencePlan | None = None
    #: When no cell is marked prepare: the cells that look like preparation.
    suggested_prepare: list[int] = field(default_factory=list)
    #: The data names each code cell binds or changes in place, by cell number: what a
    #: data, model or metrics mark of the cell may name.
    assigns: dict[int, list[str]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """Problems that stop an export."""
        return [p for p in self.problems if p.severity == "error"]


def slug(text: str) -> str:
    """``text`` as a lower-case identifier of at most 40 characters (a step or pipeline name)."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].strip("_")
    if slug and slug[0].isdigit():
        slug = "step_" + slug
    return slug


def step_code_hash(analysis: Analysis, plan: StepPlan) -> str:
    """A hash of all the code a step runs: setup, replayed definitions and its own cells."""
    digest = hashlib.sha256()
    parts = [c.python for c in analysis.setup] + list(plan.replay.values())
    parts += [c.python for c in plan.cells]
    for part in parts:
        digest.update(normalised_python(part).encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def unreadable_code(err: Exception) -> str:
    """Why Python cannot read a cell that is not a syntax error, and the fix: the end of a
    problem's message, after "NOTEBOOK, cell N"."""
    if isinstance(err, RecursionError):  # ast and the compiler recurse once per nesting level
        return (" nests too deeply for Python to read (a very long chain like `1+1+...` or "
                "brackets inside brackets); split it into smaller statements (the notebook "
                "fails there too)")
    if isinstance(err, MemoryError):
        return " is too large for Python to read; split it into smaller cells"
    return f" cannot be read as Python ({err}); remove what it names from the cell"


def _only_code(names: CellNames) -> bool:
    """True for a cell that only imports and defines functions (a setup cell in disguise)."""
    data = [n for n, kind in names.defines.items() if kind not in _CODE_KINDS]
    return not data and not names.star_imports


class _Analyzer:
    def __init__(self, notebook: SourceNotebook, split: str | None) -> None:
        self.nb = notebook
        self.split = split
        self.problems: list[Problem] = list(notebook.problems)
        self.names: dict[int, CellNames] = {}
        self.steps: list[StepPlan] = []
        self.setup: list[Cell] = []
        self.params: list[Cell] = []
        self.skipped: list[Cell] = []
        #: Per step, the definitions whose needs are already resolved.
        self.resolved: dict[str, set[str]] = {}
        #: Names a params cell assigns but could not take as parameters (said there).
        self.refused_params: set[str] = set()

    def where(self, cell: Cell) -> str:
        return f"{self.nb.name}, cell {cell.number}"

    def problem(self, cell: Cell | None, message: str, severity: str = "error",
                variable: str | None = None) -> None:
        prefix = self.where(cell) if cell else self.nb.name
        self.problems.append(Problem(f"{prefix}{message}", cell.number if cell else None,
                                     severity, variable))

    # -- 1. names of every code cell -----------------------------------------------------
    def read_names(self) -> None:
        for cell in self.nb.cells:
            if cell.cell_type != "code" or not cell.python.strip():
                continue
            try:
                self.names[cell.index] = cell_names(cell.python)
            except SyntaxError as err:
                if cell.role not in ("skip", "params"):
                    line = f" on line {err.lineno + cell.line_offset}" if err.lineno else ""
                    self.problem(cell, f" has a syntax error{line}: {err.msg}; "
                                       "fix it (the notebook fails there too)")
            except (ValueError, RecursionError, MemoryError) as err:
                if cell.role not in ("skip", "params"):  # params: read_params says it
                    self.problem(cell, unreadable_code(err))

    # -- 2. cells into setup, params, skip and steps -----------------------------------------
    def group(self) -> None:
        by_name: dict[str, StepPlan] = {}
        starts = any(c.role == "step" for c in self.nb.cells) or (
            self.split == "headings" and any(c.heading() for c in self.nb.cells))
        current: StepPlan | None = None
        pending_markdown: list[Cell] = []
        heading_step: str | None = None

        def start(name: str, cell: Cell, continues: bool = False) -> StepPlan:
            if name in by_name:
                if continues:
                    return by_name[name]
                first = by_name[name].first_cell
                self.problem(cell, f" starts step `{name}`, but cell {first} already starts a "
                                   "step of that name; rename one of them")
                return by_name[name]
            plan = StepPlan(name=name, first_cell=cell.number)
            by_name[name] = plan
            self.steps.append(plan)
            return plan

        for cell in self.nb.cells:
            if cell.cell_type == "markdown":
                title = cell.heading() if self.split == "headings" else None
                if title:
                    heading_step = slug(title) or f"step_{len(self.steps) + 1}"
                    base, n = heading_step, 2
                    while heading_step in by_name:
                        heading_step, n = f"{base}_{n}", n + 1
                    pending_markdown = []
                pending_markdown.append(cell)
                continue
            if cell.cell_type != "code" or not (cell.code.strip() or cell.mark):
                continue
            role = cell.role
            if role == "setup":
                self.setup.append(cell)
                continue
            if role == "params":
                self.params.append(cell)
                continue
            if role == "skip":
                self.skipped.append(cell)
                pending_markdown = []
                continue
            if role == "step":
                assert cell.mark is not None and cell.mark.name is not None
                current = start(cell.mark.name, cell, cell.mark.continues)
                current.explicit_after += [a for a in cell.mark.after
                                           if a not in current.explicit_after]
                heading_step = None
            elif heading_step is not None:
                current = start(heading_step, cell)
                heading_step = None
            elif current is None:
                names = self.names.get(cell.index)
                if starts and names is not None and _only_code(names):
                    self.setup.append(cell)  # leading imports and helpers
                    continue
                current = start("main" if not starts else "prepare", cell)
            current.cells.append(cell)
            current.markdown += pending_markdown
            pending_markdown = []

    # -- 3. parameters ---------------------------------------------------------------------
    def read_params(self) -> dict[str, Parameter]:
        found: dict[str, Parameter] = {}
        for cell in self.params:
            try:
                parameters, problems = parse_params_cell(cell.python, self.where(cell),
                                                         cell.number)
            except (ValueError, RecursionError, MemoryError) as err:
                self.problem(cell, unreadable_code(err))
                continue
            self.problems += problems
            for parameter in parameters:
                found.pop(parameter.name, None)
                found[parameter.name] = parameter
            if problems:  # said once there, not again at every cell using them
                defined = (self.names.get(cell.index) or CellNames()).defines
                self.refused_params.update(n for n in defined if n not in found)
        return found

    # -- 4. data flow ------------------------------------------------------------------------
    def flow(self, parameters: dict[str, Parameter]) -> None:
        latest: dict[str, tuple[str, str, int]] = {}  # name -> (producer, kind, cell number)
        for name in parameters:
            latest[name] = (PARAMS, "data", parameters[name].cell or 0)
        step_of = {c.index: plan for plan in self.steps for c in plan.cells}
        defined_later: dict[str, int] = {}
        skipped_defs: dict[str, int] = {}
        for cell in self.skipped:
            for name in (self.names.get(cell.index) or CellNames()).defines:
                skipped_defs.setdefault(name, cell.number)
        ordered = sorted(self.setup + [c for p in self.steps for c in p.cells],
                         key=lambda c: c.index)
        for cell in ordered:
            for name in (self.names.get(cell.index) or CellNames()).defines:
                defined_later.setdefault(name, cell.number)
        setup_params: list[str] = []
        star_seen = False

        for cell in ordered:
            names = self.names.get(cell.index) or CellNames()
            plan = step_of.get(cell.index)
            producer = plan.name if plan else SETUP
            star_seen = star_seen or bool(names.star_imports)
            for module in names.star_imports:
                self.problem(cell, f": `from {module} import *` hides which names the cell "
                                   "uses; import the names you need")
            late = set(names.late_uses)
            for name in names.uses + names.late_uses:
                if name in KERNEL_NAMES:
                    continue
                if name in latest:
                    source, kind, number = latest[name]
                    if source == producer:
                        continue
                    if source == PARAMS:
                        target = plan.parameters if plan else setup_params
                        if name not in target:
                            target.append(name)
                    elif source == SETUP:
                        if plan is not None and kind in _CODE_KINDS:
                            self.replay(plan, name, source, latest)
                    elif plan is None:
                        self.problem(cell, f" (setup) uses `{name}`, which step `{source}` "
                                           f"defines in cell {number}; setup cells run before "
                                           "every step, so define it in setup or in the step")
                    elif kind in _CODE_KINDS:
                        self.replay(plan, name, source, latest)
                    else:
                        plan.inputs.setdefault(name, source)
                        producer_plan = next(p for p in self.steps if p.name == source)
                        producer_plan.outputs.setdefault(name, Output(name))
                elif name in late and name in defined_later:
                    continue  # read when the function is called, later
                elif name in defined_later and defined_later[name] > cell.number:
                    self.problem(cell, f" uses `{name}` before cell {defined_later[name]} "
                                       "defines it; move that cell up, or this one down")
                elif name in skipped_defs:
                    self.problem(cell, f" uses `{name}`, which only skipped cell "
                                       f"{skipped_defs[name]} defines; unmark that cell or "
                                       f"define `{name}` in a step")
                elif name in self.refused_params:
                    continue  # its params cell's problem says what to do
                elif not star_seen:  # after `import *`, that import is the problem to fix
                    self.problem(cell, f" uses `{name}`, which no earlier step or setup cell "
                                       "defines; define it in an earlier cell or mark the cell "
                                       "that defines it", variable=name)
            for name in names.mutates:
                if name in latest and latest[name][1] not in _CODE_KINDS:
                    latest[name] = (producer, "data", cell.number)
            for name, kind in names.defines.items():
                latest[name] = (producer, kind, cell.number)
            for name in names.deletes:
                latest.pop(name, None)
            if plan is not None:
                self.declared_outputs(plan, cell, names, latest)
        for plan in self.steps:
            plan.parameters = list(dict.fromkeys(setup_params + plan.parameters))

    def replay(self, plan: StepPlan, name: str, source: str,
               latest: dict[str, tuple[str, str, int]]) -> None:
        """Give ``plan`` an import or definition that another step made, and what it reads.

        A setup cell's definition is in every step already; what its body reads when the
        step calls it still has to reach the step.
        """
        resolved = self.resolved.setdefault(plan.name, set())
        if name in resolved:
            return
        resolved.add(name)
        number = latest[name][2]
        cell = next(c for c in self.nb.cells if c.number == number)
        code = self.names[cell.index].code.get(name)
        if code is None:
            return
        if source != SETUP:
            plan.replay[name] = code
        try:
            needs = cell_names(code)
        except SyntaxError:
            return
        for used in needs.uses + needs.late_uses:
            if used in KERNEL_NAMES or used not in latest:
                continue
            origin, kind, _ = latest[used]
            if origin == PARAMS:
                if used not in plan.parameters:
                    plan.parameters.append(used)
            elif kind in _CODE_KINDS:
                self.replay(plan, used, origin, latest)
            elif origin not in (SETUP, plan.name):
                plan.inputs.setdefault(used, origin)
                next(p for p in self.steps if p.name == origin).outputs.setdefault(
                    used, Output(used))

    def declared_outputs(self, plan: StepPlan, cell: Cell, names: CellNames,
                         latest: dict[str, tuple[str, str, int]]) -> None:
        mark = cell.mark
        if mark is None or mark.role not in OUTPUT_ROLES:
            return
        if mark.variables:
            for variable in mark.variables:
                if variable not in latest:
                    self.problem(cell, f": `%%mlops {mark.role}` names `{variable}`, which no "
                                       "cell up to here defines; check the spelling")
                    continue
                plan.outputs[variable] = Output(variable, mark.role, True)
            return
        found = [n for n, k in names.defines.items() if k not in _CODE_KINDS]
        found += [n for n in names.mutates if n not in found]
        if not found and mark.role == "metrics":
            found = [n for n in names.uses if n in latest and latest[n][1] not in _CODE_KINDS]
        for variable in found:
            if variable not in plan.outputs:
                plan.outputs[variable] = Output(variable, mark.role, False)

    # -- 5. edges and order ------------------------------------------------------------------
    def edges(self) -> None:
        names = {p.name for p in self.steps}
        for plan in self.steps:
            for upstream in plan.explicit_after:
                if upstream not in names:
                    known = ", ".join(sorted(names))
                    self.problems.append(Problem(
                        f"{self.nb.name}, cell {plan.first_cell}: step `{plan.name}` runs after "
                        f"`{upstream}`, but there is no such step; steps: {known}",
                        plan.first_cell))
            if plan.name in plan.explicit_after:
                self.problems.append(Problem(
                    f"{self.nb.name}, cell {plan.first_cell}: step `{plan.name}` is told to run "
                    "after itself; remove it from `--after`", plan.first_cell))
            upstream = list(dict.fromkeys(list(plan.inputs.values()) + plan.explicit_after))
            plan.after = [u for u in upstream if u in names and u != plan.name]
        if not self.steps and not any(p.severity == "error" for p in self.problems):
            self.problems.append(Problem(
                f"{self.nb.name} has no code to export (every code cell is empty, setup, "
                "params or skip); add the cells that do the work, or unmark them"))
        cycle = find_cycle({p.name: p.after for p in self.steps})
        if cycle:
            first = next(p for p in self.steps if p.name == cycle[0]).first_cell
            self.problems.append(Problem(
                f"{self.nb.name}, cell {first}: steps form a cycle "
                f"({' -> '.join([*cycle, cycle[0]])}); remove an `--after` or move the cells "
                "so each step only uses what earlier steps made", first))

    def rebound_captures(self) -> None:
        """Warn where a step binds a name again after a cell of it recorded that name as
        its data or model: the pipeline passes on the value the step ends with, not the
        one recorded (a bagging demo's ``tree = DecisionTreeClassifier()`` after the fitted
        tree was marked, and the pipeline shipped it unfitted)."""
        for plan in self.steps:
            passed = {n for other in self.steps for n, source in other.inputs.items()
                      if source == plan.name}
            marked: dict[str, tuple[int, str]] = {}  # name -> (cell number, role)
            named: set[str] = set()
            for cell in plan.cells:
                names = self.names.get(cell.index) or CellNames()
                mark = cell.mark
                recorded = (mark is not None and mark.role in ("data", "model"))
                for name in names.defines:
                    # only what a mark names, or what the step passes on (not a loop's
                    # `col` or a constant that an unnamed mark's cell also assigned)
                    if name in marked and (name in named or name in passed) and not (
                            recorded and name in mark.variables):
                        number, role = marked.pop(name)
                        self.problem(cell, f" binds `{name}` again after cell {number} "
                                           f"recorded it as step `{plan.name}`'s {role}; the "
                                           "pipeline passes on the value the step ends with, "
                                           "this one: give one of them another name, or start "
                                           "a step before this cell", "warning", name)
                if recorded:
                    chosen = list(mark.variables) or [
                        n for n, k in names.defines.items() if k not in _CODE_KINDS]
                    marked.update({n: (cell.number, mark.role) for n in chosen})
                    named.update(mark.variables)

    def empty_magics(self) -> None:
        for cell in self.nb.cells:
            if (cell.mark is not None and cell.mark.spelling == "magic"
                    and not cell.code.strip()
                    and cell.source.lstrip().startswith("%%")):
                self.problem(cell, ": IPython refuses `%%mlops` with nothing under it; write "
                                   f"`%mlops {cell.mark.role} ...` (one %) instead", "warning")

    def out_of_order(self) -> None:
        counts = [(c.execution_count, c) for c in self.nb.cells
                  if c.cell_type == "code" and c.role != "skip"
                  and isinstance(c.execution_count, int)]
        for (before, earlier), (after, later) in itertools.pairwise(counts):
            if after < before:
                self.problem(later, f" ran before cell {earlier.number} (execution counts "
                                    f"{after} < {before}); the pipeline runs top to bottom, so "
                                    "restart the kernel and run all to check it still works",
                             "warning")
                return


def find_cycle(graph: dict[str, list[str]]) -> list[str]:
    """A list of nodes forming a cycle in ``graph`` (node -> upstream nodes), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for upstream in graph.get(node, []):
            if state.get(upstream) == 1:
                return list(reversed(stack[stack.index(upstream):]))
            if upstream not in state:
                found = visit(upstream)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in graph:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def analyze(notebook: SourceNotebook, split: str | None = None) -> Analysis:
    """Analyse a read notebook: steps, data flow, parameters and problems."""
    analyzer = _Analyzer(notebook, split)
    analyzer.read_names()
    analyzer.group()
    parameters = analyzer.read_params()
    analyzer.flow(parameters)
    analyzer.edges()
    analyzer.out_of_order()
    analyzer.rebound_captures()
    analyzer.empty_magics()
    inference, refused = plan_inference(
        notebook.name, analyzer.setup, {p.name: p.cells for p in analyzer.steps},
        analyzer.names, set(parameters))
    analyzer.problems += refused
    # in the order a reader meets them: by cell, notebook-wide ones first
    problems = sorted(analyzer.problems, key=lambda p: -1 if p.cell is None else p.cell)
    return Analysis(
        notebook=notebook,
        steps=analyzer.steps,
        setup=analyzer.setup,
        parameters=list(parameters.values()),
        skipped=analyzer.skipped,
        problems=problems,
        inference=inference,
        suggested_prepare=suggest_prepare({p.name: p.cells for p in analyzer.steps},
                                          analyzer.names),
        assigns={cell.number: _data_names(analyzer.names.get(cell.index))
                 for cell in notebook.cells if cell.cell_type == "code"},
    )


def _data_names(names: CellNames | None) -> list[str]:
    """The names a cell binds to data (not imports, functions or classes) or changes in
    place, in the order it binds them."""
    if names is None:
        return []
    bound = [n for n, kind in names.defines.items() if kind not in _CODE_KINDS]
    return bound + [n for n in names.mutates if n not in bound]

