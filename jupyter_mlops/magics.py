"""The ``%%mlops`` cell magic: runs the cell as if unmarked, after checking its mark."""

from __future__ import annotations

import ast
import sys
from typing import Any

from .errors import RoleError
from .roles import parse_magic_line


def run_in_namespace(shell: Any, code: str) -> None:
    """Run ``code`` in the user's namespace as a cell would: the last expression is displayed
    and an exception propagates unchanged, so the outer cell fails as it would unmarked."""
    python = shell.transform_cell(code)
    tree = ast.parse(python, "<mlops cell>")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    namespace = shell.user_ns
    if tree.body:
        exec(compile(tree, "<mlops cell>", "exec"), namespace)
    if last is not None:
        value = eval(compile(last, "<mlops cell>", "eval"), namespace)
        if value is not None:
            shell.displayhook(value)


def mlops(line: str, cell: str | None = None) -> None:
    """``%%mlops ROLE [ARGS]``: mark a cell's role for the pipeline, then run it."""
    from IPython import get_ipython

    shell = get_ipython()
    try:
        parse_magic_line(line)
    except RoleError as err:
        # One line, no traceback, nothing run: the kernel's state stays as it was.
        print(f"jupyter-mlops: {err}", file=sys.stderr)
        return
    if cell:
        run_in_namespace(shell, cell)


def register(ipython: Any) -> None:
    """Register the magic with an IPython shell."""
    ipython.register_magic_function(mlops, magic_kind="line_cell", magic_name="mlops")
