"""The user's kernel as the magics see it: the notebook it runs and the variables it holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def current_notebook(shell: Any) -> Path:
    """The notebook this kernel runs: JupyterLab and VS Code say so; else ``notebook.ipynb``
    in the working directory (set ``JUPYTER_MLOPS_NOTEBOOK`` to choose)."""
    ns = shell.user_ns
    for candidate in (os.environ.get("JUPYTER_MLOPS_NOTEBOOK"), ns.get("__vsc_ipynb_file__"),
                      ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate)
            # JupyterLab gives a path from the server's root; the kernel runs beside it
            return path if path.is_absolute() and path.parent.is_dir() else Path(path.name)
    return Path("notebook.ipynb")


def kernel_variables(shell: Any) -> list[str]:
    """The user's variables in the kernel: no modules, functions, or IPython's own names."""
    import types

    hidden = getattr(shell, "user_ns_hidden", {})
    return [n for n, v in shell.user_ns.items()
            if not n.startswith("_") and n not in hidden
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))]
