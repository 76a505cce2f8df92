"""The ``%%mlops`` cell magic: runs the cell as if unmarked, then captures what it made.

Capture problems are one line in the cell's output; they never undo or change what the
cell did, and the cell's own exceptions propagate unchanged.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ContractError, MlopsError, RoleError
from ..notebook.roles import Mark, parse_magic_line, parse_tags
from .kernel import kernel_variables, locate_notebook


def run_in_namespace(shell: Any, code: str) -> None:
    """Run ``code`` in the user's namespace as a cell would: the last expression is displayed
    (unless a ``;`` ends it), an exception propagates unchanged, so the outer cell fails as
    it would unmarked, and its traceback shows the cell's own lines, not this module's."""
    __tracebackhide__ = True  # IPython leaves this frame out of tracebacks
    python = shell.transform_cell(code)
    # registered as IPython registers a cell, so a traceback quotes the user's lines
    # (the count has moved on to the next cell while this one runs)
    filename = shell.compile.cache(python, max(shell.execution_count - 1, 0), raw_code=code)
    tree = ast.parse(python, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    namespace = shell.user_ns
    if tree.body:
        exec(compile(tree, filename, "exec"), namespace)
    if last is not None:
        value = eval(compile(last, filename, "eval"), namespace)
        if value is not None and not _quiet(python):
            shell.displayhook(value)


def _quiet(python: str) -> bool:
    """Whether ``python`` ends with a ``;``, which keeps IPython from showing its value (its
    own check looks at the whole cell, the ``%%mlops`` line's call)."""
    import io
    import tokenize

    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(python).readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    ignored = (tokenize.ENDMARKER, tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)
    last = next((t for t in reversed(tokens) if t.type not in ignored), None)
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _assigned(code: str) -> list[str]:
    from ..notebook.names import cell_names
    from ..notebook.reader import to_python

    try:
        names = cell_names(to_python(code))
    except SyntaxError:
        return []
    return [n for n, kind in names.defines.items() if kind == "data"] + names.mutates


def _capture_data(shell: Any, mark: Mark, code: str, notebook: Path) -> str:
    from ..notebook.captures import update_record
    from ..notebook.reader import code_key
    from ..runtime.profile import profile_data

    ns = shell.user_ns
    names = list(mark.variables) or [
        n for n in _assigned(code)
        if type(ns.get(n)).__name__ in ("DataFrame", "Series", "ndarray")]
    if not names:
        raise MlopsError("no data to record: name the frames, e.g. `%%mlops data df`")
    key = code_key(code)
    entries = {}
    for name in names:
        if name not in ns:
            raise MlopsError(f"`{name}` does not exist after this cell ran; check the spelling")
        profile = profile_data(ns[name], name)
        entries[f"{name}-{key}"] = {"variable": name, "cell_key": key, "profile": profile}
    update_record(notebook, "data", entries,
                      kernel_names=kernel_variables(shell))
    return "recorded " + ", ".join(
        f"{e['variable']} ({e['profile']['rows']:,} rows x {len(e['profile']['columns'])} "
        "columns)" for e in entries.values())


#: Roles whose cells write to the capture record.
CAPTURING_ROLES = ("data", "params", "metrics", "model")


def _notebook_for(shell: Any, mark: Mark, code: str, line: str) -> Path | None:
    """The notebook whose record this cell's captures go to; None when the kernel cannot
    tell. How it was found (or why not) is said once, at the cell that decided it."""
    located = locate_notebook(shell, code, line, captures=mark.role in CAPTURING_ROLES)
    if located.note and located.problem:
        print(f"jupyter-mlops: {located.note}", file=sys.stderr)
    elif located.note and os.environ.get("JUPYTER_MLOPS_QUIET") is None:
        print(f"jupyter-mlops: {located.note}")
    return located.notebook


def capture(shell: Any, mark: Mark, code: str, line: str = "") -> str | None:
    """Capture what a cell of role ``mark`` (``line`` its magic's arguments) made; a
    one-line summary, or None."""
    from ..notebook.captures import model_folder, update_record
    from ..notebook.params import capture_params
    from ..runtime.capture import capture_metrics, capture_model

    ns = shell.user_ns
    if mark.role in ("data", "metrics") and ns.get("mlops_pipeline"):
        from ..notebook.reader import code_key
        from ..runtime.checks import check

        names = list(mark.variables) or _assigned(code)
        return check(ns, mark.role, code_key(code), names)
    if ns.get("mlops_pipeline"):
        return None  # a pipeline step records nothing beside the source notebook
    notebook = _notebook_for(shell, mark, code, line)
    if notebook is None:
        return None  # the kernel cannot tell where; it said so at its first marked cell
    if mark.role == "data":
        return _capture_data(shell, mark, code, notebook)
    if mark.role == "params":
        entries = capture_params(shell.transform_cell(code), ns)
        update_record(notebook, "params", entries,
                      kernel_names=kernel_variables(shell))
        return f"recorded {len(entries)} parameter(s)"
    if mark.role == "metrics":
        names = list(mark.variables) or _assigned(code)
        entries = capture_metrics(names, ns, dict(mark.minimums), dict(mark.maximums))
        update_record(notebook, "metrics", entries,
                      kernel_names=kernel_variables(shell))
        return "recorded " + ", ".join(f"{n} = {e['value']:.4g}" for n, e in entries.items())
    if mark.role == "model":
        candidates = list(mark.variables) or [
            n for n in _assigned(code) if hasattr(ns.get(n), "get_params")]
        if not candidates:
            raise MlopsError("no model to record: name it, e.g. `%%mlops model clf`")
        name = candidates[-1]
        entry = capture_model(name, ns, model_folder(notebook))
        update_record(notebook, "models", {name: entry},
                      kernel_names=kernel_variables(shell))
        return f"recorded model `{name}` ({entry['class'].rsplit('.', 1)[-1]})"
    return None


def mlops(line: str, cell: str | None = None) -> None:
    """``%%mlops ROLE [ARGS]``: mark a cell's role for the pipeline, run it, capture.

    As a line magic, ``%mlops ROLE [ARGS]`` marks its cell and captures without running
    anything (IPython refuses a cell magic with an empty body).
    """
    from IPython import get_ipython

    __tracebackhide__ = True  # the cell's traceback starts at its own code
    shell = get_ipython()
    command = line.split()[0] if line.split() else ""
    if cell is None and command in _COMMANDS:
        try:
            _COMMANDS[command](shell, line[len(command):].strip())
        except MlopsError as err:
            print(f"jupyter-mlops: {err}", file=sys.stderr)
        return
    try:
        mark = parse_magic_line(line)
    except RoleError as err:
        # One line, no traceback, nothing run: the kernel's state stays as it was.
        print(f"jupyter-mlops: {err}", file=sys.stderr)
        return
    if cell is not None:
        run_in_namespace(shell, cell)
    # `%mlops metrics acc` (one %) captures what earlier cells made, running nothing
    _capture_and_say(shell, mark, cell or "", line)


def _capture_and_say(shell: Any, mark: Mark, code: str, line: str = "") -> None:
    """Capture for one mark, and say what was recorded (or what went wrong) in one line."""
    try:
        summary = capture(shell, mark, code, line)
    except ContractError:
        raise  # in a pipeline run, a broken contract fails the step
    except MlopsError as err:
        print(f"jupyter-mlops: {err}", file=sys.stderr)
        return
    except Exception as err:  # a bug of ours must not fail a cell whose own code worked
        print(f"jupyter-mlops: could not capture this cell ({type(err).__name__}: {err}); "
              "the cell itself ran. Please report this.", file=sys.stderr)
        return
    if summary and os.environ.get("JUPYTER_MLOPS_QUIET") is None:
        print(f"jupyter-mlops: {summary}")


def capture_cell(tags: list[str], code: str) -> None:
    """What ``%%mlops`` does after its cell ran, for a cell marked by tags: the sidebar sends
    this (silently) right behind a tag-marked cell's own code, so both spellings capture the
    same. Each capturing mark of ``tags`` is captured and said in one line; bad tags are one
    line too, never an exception (a broken contract in a pipeline run still raises)."""
    from IPython import get_ipython

    try:
        marks = parse_tags(list(tags))
    except RoleError as err:
        print(f"jupyter-mlops: {err}", file=sys.stderr)
        return
    shell = get_ipython()
    for mark in marks:
        if mark.role in CAPTURING_ROLES:
            _capture_and_say(shell, mark, code)


def _status(shell: Any, args: str) -> None:
    from .status import show_status

    show_status(shell, args)


def _panel(shell: Any, args: str) -> None:
    from .panel import show_panel

    show_panel(shell, args)


#: ``%mlops COMMAND``: line commands besides the roles.
_COMMANDS = {"status": _status, "panel": _panel}


def register(ipython: Any) -> None:
    """Register the magic with an IPython shell."""
    ipython.register_magic_function(mlops, magic_kind="line_cell", magic_name="mlops")
