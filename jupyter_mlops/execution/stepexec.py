"""Running one step notebook: the papermill call every executor shares, its kernel, and
what that kernel may import before the step's inputs exist (:mod:`.kernelpool`)."""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import OptionError, SpecError

if TYPE_CHECKING:
    from ..pipeline.spec import PipelineSpec

#: A module to import ahead: (name, the names a ``from`` import takes, whether it may fail).
Module = tuple[str, tuple[str, ...], bool]


@dataclass(frozen=True)
class KernelCommand:
    """The kernel a pipeline's steps run in: its kernelspec, the folder it works in (the
    notebook's), and arguments added to its command line."""

    name: str
    workdir: str
    extra_arguments: tuple[str, ...] = ()


@dataclass(frozen=True)
class StepCall:
    """One step notebook to execute into ``output``, as every executor receives it."""

    step: str
    notebook: str
    output: str
    kernel: KernelCommand
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Whole seconds a cell may run before it is interrupted; None: no limit.
    cell_timeout: int | None = None
    #: Where a kernel started for this step writes its own stdout and stderr
    #: (:mod:`.kernellog`); None: where this process writes.
    kernel_log: str | None = None

_MAGIC = "__mlops_magic__"

#: Set in the environment of every step kernel (unless set already): ipykernel imports the
#: debugger, which warns on stderr that frozen modules are used (Python 3.11+, a kernelspec
#: without ``-Xfrozen_modules=off``). A step kernel is never debugged, and that warning,
#: the last line of a kernel's log, would be quoted as if it explained a failure.
QUIET_DEBUGGER = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}


#: Thread counts for the numerical libraries of the kernels started now (set by a run whose
#: steps may run side by side: :mod:`jupyter_mlops.run.threads`); the process's own
#: environment, the user's, wins over them.
KERNEL_THREADS: dict[str, str] = {}


def kernel_environ() -> dict[str, str]:
    """The environment a step's kernel starts from: this process's, the debugger quiet, the
    run's thread counts where the user set none."""
    return {**QUIET_DEBUGGER, **KERNEL_THREADS, **os.environ}


def execute_step(call: StepCall, on_cell: Callable[[int, int, Any], None] | None = None,
                 kernel_manager: Callable[[], Any] | None = None,
                 on_kernel: Callable[[int], None] | None = None) -> None:
    """Run ``call.notebook`` into ``call.output`` with papermill's mlops engine, the kernel
    working in its folder; a timed-out cell is interrupted so papermill marks it. Raises what
    papermill raises.

    ``kernel_manager``, called once papermill is imported (a kernel starts meanwhile), gives
    a started kernel to run in (see :mod:`.kernelpool`), or None: papermill starts one. The
    caller shuts a kernel it gave down. A kernel papermill starts appends its own stdout and
    stderr to ``kernel_log`` (:mod:`.kernellog`; None: inherited), and its pid is told to
    ``on_kernel`` once it runs (a stop must reach it too).
    """
    from .imports import papermill_and_engine

    papermill = papermill_and_engine()
    extra = {}
    manager = kernel_manager() if kernel_manager is not None else None
    if manager is not None:
        extra["km"] = manager
    else:
        if call.kernel_log is not None:
            extra["kernel_log"] = Path(call.kernel_log)
        if on_kernel is not None:
            extra["on_kernel"] = on_kernel
    papermill.execute_notebook(
        call.notebook, call.output, parameters=call.parameters, kernel_name=call.kernel.name,
        progress_bar=False, engine_name="mlops", on_cell=on_cell,
        execution_timeout=call.cell_timeout, interrupt_on_timeout=True,
        resources={"metadata": {"path": call.kernel.workdir}},
        extra_arguments=list(call.kernel.extra_arguments), **extra)


def check_kernel(name: str, chosen: bool = False) -> list[str]:
    """Refuse to start when the kernel is not installed here (``chosen``: named with
    ``--kernel``, else the pipeline's), naming those that are; else the extra arguments that
    keep an ipykernel's own log lines (transport warnings) off our stderr (what the code
    prints still reaches the executed notebook). One kernelspec lookup."""
    from ..pipeline.kernels import installed_kernels, kernel_spec

    spec = kernel_spec(name)
    if spec is None:
        known = ", ".join(installed_kernels()) or "none"
        if chosen:
            raise OptionError(f"no kernel `{name}` is installed here; the kernels are: {known}",
                              option="kernel")
        raise SpecError(
            f"the pipeline's kernel `{name}` is not installed here (the kernels are: {known}); "
            f"run it in one of those with --kernel NAME, install it (e.g. `python -m "
            f"ipykernel install --user --name {name}`), or export again with --kernel NAME"
        )
    return ["--IPKernelApp.log_level=CRITICAL"] if any("ipykernel" in a for a in spec.argv) \
        else []


def close_thread_loop() -> None:
    """Close the event loop that papermill's client left in this worker thread.

    nbclient runs its coroutines on a loop it creates per thread and never closes; closed
    here, a long-lived process (the Jupyter server) does not leak one per step.
    """
    import asyncio  # here: a re-run whose steps are all reused never needs it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


# -- what a step may import ahead -----------------------------------------------------------

def _pure(node: ast.AST | None) -> bool:
    """An expression that only reads names and literals (no call can hide in it)."""
    if node is None or isinstance(node, ast.Constant | ast.Name):
        return True
    if isinstance(node, ast.Attribute):
        return _pure(node.value)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_pure(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_pure(e) for e in [*node.keys, *node.values])
    if isinstance(node, ast.Subscript):
        return _pure(node.value) and _pure(node.slice)
    if isinstance(node, ast.UnaryOp):
        return _pure(node.operand)
    if isinstance(node, ast.BinOp):
        return _pure(node.left) and _pure(node.right)
    return False


def _neutral(node: ast.stmt) -> bool:
    """A statement after which an import behaves as before it: a definition or literal."""
    if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and _pure(node.value)):
        return True
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        evaluated = [*args.defaults, *args.kw_defaults, node.returns,
                     *(a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs,
                                              args.vararg, args.kwarg] if a is not None)]
        return not node.decorator_list and all(_pure(e) for e in evaluated)
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and _pure(node.value)
    if isinstance(node, ast.AnnAssign):
        return (isinstance(node.target, ast.Name) and _pure(node.value)
                and _pure(node.annotation))
    return False


def _imports(node: ast.stmt, optional: bool) -> list[Module] | None:
    """The modules an import statement imports; None if ``node`` is not an absolute import."""
    if isinstance(node, ast.Import):
        return [(a.name, (), optional) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [(node.module, tuple(a.name for a in node.names if a.name != "*"), optional)]
    return None


def _guarded_imports(node: ast.stmt) -> list[Module] | None:
    """``try: import x / except ImportError: x = None``: its imports, allowed to fail."""
    if not isinstance(node, ast.Try) or node.finalbody or node.orelse:
        return None
    found: list[Module] = []
    for statement in node.body:
        modules = _imports(statement, True)
        if modules is None:
            return None
        found += modules
    for handler in node.handlers:
        if not all(_neutral(s) for s in handler.body):
            return None
    return found


def _cell_statements(source: str) -> tuple[list[ast.stmt], list[str]] | None:
    """A cell's top-level statements, each IPython line (magic, shell command) turned into
    ``__mlops_magic__(N)`` with N its index in the list of those lines. None if the cell is
    not Python with line magics (a cell magic other than ours, ``files = !ls``)."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        if not lines[0].startswith("%%mlops"):
            return None
        lines = lines[1:]  # our data and metric magics run the body as it is
    magics = []
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            lines[number] = f"{line[: len(line) - len(stripped)]}{_MAGIC}({len(magics)})"
            magics.append(stripped)
    try:
        return ast.parse("\n".join(lines)).body, magics
    except SyntaxError:
        return None


def _magic(node: ast.stmt, magics: list[str]) -> str | None:
    """The IPython line a statement stands for, if it is one of the markers."""
    if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name) and node.value.func.id == _MAGIC
            and isinstance(node.value.args[0], ast.Constant)):
        return magics[node.value.args[0].value]
    return None


def source_plan(sources: list[str]) -> list[Module]:
    """The modules Python code ``sources``, run in turn, import before anything that could
    change an import (:func:`warm_plan`'s rule, for code outside a step notebook)."""
    found: list[Module] = []
    for source in sources:
        parsed = _cell_statements(source)
        if parsed is None:
            return found
        for node in parsed[0]:
            modules = _imports(node, False) or _guarded_imports(node)
            if modules is not None:
                found += modules
            elif not _neutral(node):
                return found
    return found


def warm_plan(notebook: str | Path, roles: set[str] | None = None) -> list[Module]:
    """The modules a step notebook imports before anything that could change an import.

    ``roles`` are those of the step's inputs: the libraries that loading them imports are
    added after the cell that loads them, where the step itself imports them.
    """
    content = json.loads(Path(notebook).read_text(encoding="utf-8"))
    found: list[Module] = []
    for cell in content.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        cell_id = str(cell.get("id", ""))
        if cell_id == "mlops-load-extension":
            found.append(("jupyter_mlops.ipython.magics", (), False))
            continue
        if cell_id == "mlops-runtime":  # our protocol check: imports the runtime, nothing more
            found.append(("jupyter_mlops.runtime", (), False))
            continue
        source = cell.get("source", "")
        parsed = _cell_statements("".join(source) if isinstance(source, list) else source)
        if parsed is None:
            return found
        statements, magics = parsed
        for node in statements:
            modules = _imports(node, False) or _guarded_imports(node)
            magic = _magic(node, magics)
            if modules is not None:
                found += modules
            elif magic is not None and magic.split()[:2] == ["%load_ext", "jupyter_mlops"]:
                found.append(("jupyter_mlops.ipython.magics", (), False))
            elif cell_id == "mlops-inputs" and isinstance(node, ast.Expr):
                continue  # our load_inputs(...) call: it reads artifacts, nothing more
            elif not _neutral(node):
                return found
        if cell_id == "mlops-inputs":
            found += _artifact_modules(found, roles or set())
    return found


def step_plan(spec: PipelineSpec, pipeline_dir: Path, name: str) -> list[Module]:
    """:func:`warm_plan` of a pipeline's step, its artifacts' roles read from the spec
    (nothing to import ahead if its notebook cannot be read, the step will say why, or if
    its kernel is not Python)."""
    if spec.kernel.get("language", "python") != "python":
        return []
    step = spec.step(name)
    try:
        return warm_plan(pipeline_dir / step.notebook, _input_roles(spec, name))
    except (OSError, ValueError):
        return []


def zygote_plan(spec: PipelineSpec, pipeline_dir: Path, name: str) -> list[Module]:
    """What the zygote (:mod:`.zygote`) imports before it forks step ``name``'s kernel: its
    :func:`step_plan`, then what saving its outputs imports (our own dependencies: the step's
    code cannot change where they come from, only the folder's own modules could)."""
    plan = step_plan(spec, pipeline_dir, name)
    roles = {o.role for o in spec.step(name).outputs}
    return plan + [m for m in _artifact_modules(plan, roles) if m not in plan]


def artifact_plan(spec: PipelineSpec, pipeline_dir: Path, name: str) -> list[Module]:
    """What loading step ``name``'s inputs and saving its outputs import (Arrow for frames,
    skops for a model): our own dependencies, which a zygote may import ahead for any step."""
    roles = {o.role for o in spec.step(name).outputs} | _input_roles(spec, name)
    return _artifact_modules(step_plan(spec, pipeline_dir, name), roles)


def _input_roles(spec: PipelineSpec, name: str) -> set[str]:
    """The roles of step ``name``'s inputs, as the steps that make them record them."""
    step = spec.step(name)
    return {o.role for variable, producer in step.inputs.items()
            for o in spec.step(producer).outputs if o.name == variable}


def _artifact_modules(found: list[Module], roles: set[str]) -> list[Module]:
    """What loading or saving artifacts of these roles imports. A step's kernel imports
    ahead only what loading its inputs needs: saving happens after the step's own code."""
    extra: list[Module] = []
    if roles and any(name.partition(".")[0] == "pandas" for name, _, _ in found):
        extra.append(("pyarrow.feather", (), True))  # frames are kept as Arrow files
    if "model" in roles:
        extra.append(("skops.io", (), True))
    return extra
