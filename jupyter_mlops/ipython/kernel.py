"""The user's kernel as the magics see it: the notebook it runs and the variables it holds.

JupyterLab, Jupyter Notebook and VS Code tell a kernel its notebook. papermill and
``jupyter nbconvert --execute`` do not: the kernel only has its working folder and the
process that started it. There the notebook is found from what the kernel does know (see
:func:`locate_notebook`), and when that cannot tell, nothing is captured and the kernel
says so once, instead of writing a record where no export will look for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: The environment variable that names the notebook outright (it wins over everything).
NOTEBOOK_VARIABLE = "JUPYTER_MLOPS_NOTEBOOK"
#: Where the kernel keeps its search for the notebook between cells (an attribute of the shell).
_SEARCH = "_jupyter_mlops_notebook_search"
#: Programs that run a notebook without telling its kernel which one (the parent's command).
_RUNNERS = ("papermill", "nbconvert", "nbclient", "nbmake", "pytest")
_HOW_TO_CHOOSE = (f"set {NOTEBOOK_VARIABLE}=path/to/notebook.ipynb where the kernel starts "
                  "(in papermill's or nbconvert's environment)")


@dataclass
class Located:
    """Where this kernel's captures go.

    ``notebook`` is None when the kernel cannot tell (nothing is captured then); ``note`` is
    the one line that explains a notebook found by deduction, or why there is none, given
    once per kernel; ``problem`` says the note is a warning.
    """

    notebook: Path | None
    note: str = ""
    problem: bool = False


@dataclass
class _Search:
    """The kernel's search for its notebook, narrowed at each marked cell until it decides."""

    #: Candidate notebooks (absolute) -> the signatures of their ``%%mlops`` cells.
    candidates: dict[Path, set[tuple[str, str]]]
    #: Candidates the parent process names on its command line (its input notebook).
    named: set[Path]
    #: The parent process's program, as users call it (``papermill``), or "".
    runner: str
    folder: Path
    decided: Located | None = None
    said: bool = False


def _session_notebook(shell: Any) -> str | None:
    """The notebook JupyterLab or VS Code told this kernel of, if it told this kernel.

    ``JPY_SESSION_NAME`` (and ipykernel's ``__session__`` made from it) is inherited: a
    ``!papermill other.ipynb`` run from a notebook would otherwise capture into the notebook
    that started it. When the parent process has the same value, it is not ours.
    """
    ns = shell.user_ns
    vscode = ns.get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode.endswith(".ipynb"):
        return vscode
    for candidate in (ns.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            if _parent_environ().get("JPY_SESSION_NAME") == candidate:
                return None  # inherited from whatever started our parent
            return candidate
    return None


def _named_notebook(shell: Any) -> Path | None:
    """The notebook named outright: ``JUPYTER_MLOPS_NOTEBOOK``, else the front end's."""
    explicit = os.environ.get(NOTEBOOK_VARIABLE)
    if explicit:
        return Path(explicit)
    candidate = _session_notebook(shell)
    if candidate is None:
        return None
    path = Path(candidate)
    # JupyterLab gives a path from the server's root; the kernel runs beside it
    return path if path.is_absolute() and path.parent.is_dir() else Path(path.name)


def current_notebook(shell: Any) -> Path:
    """The notebook this kernel runs, as far as it is known without a cell to match:
    ``JUPYTER_MLOPS_NOTEBOOK``, JupyterLab and VS Code say so; else the one an earlier
    marked cell found; else ``notebook.ipynb`` in the working directory."""
    named = _named_notebook(shell)
    if named is not None:
        return named
    search = getattr(shell, _SEARCH, None)
    if search is not None and search.decided is not None and search.decided.notebook:
        return search.decided.notebook
    return Path("notebook.ipynb")


# -- papermill and nbconvert: finding the notebook the kernel was not told of ----------------

def _parent() -> Any:
    """The process that started this kernel (papermill, nbconvert, a Jupyter server), or None."""
    try:
        import psutil

        parent = psutil.Process(os.getppid())
        parent.cmdline()  # may be refused: then we know nothing of it
        return parent
    except Exception:  # no such process, no permission, no psutil: nothing to learn here
        return None


def _parent_environ() -> dict[str, str]:
    return dict(_environ_of(os.getppid()))


@lru_cache(maxsize=4)
def _environ_of(pid: int) -> tuple[tuple[str, str], ...]:
    """The environment of process ``pid`` (read once: it is asked at every marked cell)."""
    try:
        import psutil

        return tuple(psutil.Process(pid).environ().items())
    except Exception:  # another user's process, one that just ended, or no psutil
        return ()


def _runner_name(command: list[str]) -> str:
    """``papermill`` for ``python -m papermill ...`` or ``.../bin/papermill ...``."""
    for word in command[:3]:
        name = Path(word).name
        for runner in _RUNNERS:
            if runner in name:
                return runner
    return Path(command[0]).name if command else ""


def _parent_notebooks(parent: Any) -> list[Path]:
    """Existing notebooks named on the parent's command line, in order, but for the copy
    ``nbconvert --execute --output X.ipynb`` writes (a second run found it beside the
    notebook, with the same marked cells, and captured nothing, unable to tell them apart).

    A relative path is relative to the folder the parent started in, which it may have left
    (``papermill --cwd``): its folder now, the shell's ``PWD`` and ours are tried.
    """
    try:
        command = list(parent.cmdline())
        bases = [Path(parent.cwd())]
        pwd = _parent_environ().get("PWD")
    except Exception:  # the parent ended or hides itself
        return []
    if pwd:
        bases.append(Path(pwd))
    bases.append(Path.cwd())
    found: list[Path] = []
    for index, word in enumerate(command[1:], start=1):  # (3.9 kernels: no pairwise)
        before = command[index - 1]
        if word.startswith("--output="):  # nbconvert's copy it writes: not what runs
            continue
        if not word.endswith(".ipynb") or before == "--output":
            continue
        paths = [Path(word)] if Path(word).is_absolute() else [b / word for b in bases]
        for path in paths:
            try:
                if path.is_file():
                    found.append(path.resolve())
                    break
            except OSError:
                continue
    return list(dict.fromkeys(found))


def _signature(line: str, code: str) -> tuple[str, str]:
    """What identifies a marked cell across notebooks: the code key of a ``%%mlops`` cell,
    or the arguments of a line-form ``%mlops`` (whose cell has no code of its own)."""
    from ..notebook.reader import code_key

    if code.strip():
        return ("cell", code_key(code))
    return ("line", " ".join(line.split()))


def _signatures(path: Path) -> set[tuple[str, str]] | None:
    """The signatures of the ``%%mlops`` cells of ``path``; None for a papermill output (an
    executed copy of another notebook) or a file that is not a readable notebook."""
    from ..notebook.reader import code_key, read_notebook

    try:
        notebook = read_notebook(path)
    except Exception:  # a broken or unreadable notebook in the folder is not ours
        return None
    papermill = notebook.metadata.get("papermill")
    if isinstance(papermill, dict):
        source, written = papermill.get("input_path"), papermill.get("output_path")
        if (isinstance(source, str) and isinstance(written, str)
                and Path(written).name == path.name and Path(source).name != path.name):
            return None  # papermill wrote it from another notebook: a copy, not the source
    found: set[tuple[str, str]] = set()
    for cell in notebook.cells:
        if cell.cell_type != "code" or cell.mark is None or cell.mark.spelling != "magic":
            continue
        first = cell.source.lstrip().split("\n", 1)[0].rstrip()
        if first.startswith("%%"):
            found.add(("cell", code_key(cell.code)))
        else:
            found.add(_signature(first.partition("mlops")[2], ""))
    return found


def _start_search() -> _Search:
    """The candidates: notebooks the parent process names, and those in our working folder."""
    folder = Path.cwd()
    parent = _parent()
    named = _parent_notebooks(parent) if parent is not None else []
    runner = ""
    if parent is not None:
        try:
            runner = _runner_name(list(parent.cmdline()))
        except Exception:  # the parent ended meanwhile
            runner = ""
    try:
        here = sorted(p.resolve() for p in folder.glob("*.ipynb")
                      if not p.name.startswith(".") and p.is_file())
    except OSError:
        here = []
    candidates: dict[Path, set[tuple[str, str]]] = {}
    for path in dict.fromkeys(named + here):
        if (path.name.endswith(".nbconvert.ipynb") and path not in named
                and path.with_name(path.name[:-len(".nbconvert.ipynb")] + ".ipynb").is_file()):
            continue  # nbconvert's executed copy of the notebook beside it
        signatures = _signatures(path)
        if signatures is not None:
            candidates[path] = signatures
    return _Search(candidates, {p for p in named if p in candidates}, runner, folder)


def _names(paths: list[Path]) -> str:
    names = [p.name for p in sorted(paths)]
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return shown


def _decide(search: _Search, final: bool) -> Located | None:
    """A decision when the candidates allow one (or ``final`` demands one), else None."""
    left = list(search.candidates)
    named = [p for p in left if p in search.named]
    if len(named) == 1:  # the notebook papermill or nbconvert was started with
        path = named[0]
        runner = search.runner or "the process that started this kernel"
        return Located(path, f"capturing into {path.stem}.mlops.json beside {path}: the "
                       f"notebook {runner} runs (its path on {runner}'s command line)")
    if len(left) == 1:
        path = left[0]
        return Located(path, f"capturing into {path.stem}.mlops.json beside {path}: it is the "
                       f"only notebook in {search.folder} whose marked cells include the ones "
                       f"run so far (the kernel is not told its notebook; {_HOW_TO_CHOOSE} to "
                       "choose)")
    if not left:
        return Located(None, "cannot tell which notebook this kernel runs: no notebook in "
                       f"{search.folder} has this marked cell, and the kernel is not told its "
                       f"notebook; nothing is captured: {_HOW_TO_CHOOSE}", problem=True)
    if final:
        return Located(None, "cannot tell which notebook this kernel runs: "
                       f"{_names(left)} in {search.folder} all have the marked cells run so "
                       f"far; nothing is captured: {_HOW_TO_CHOOSE}", problem=True)
    return None


def locate_notebook(shell: Any, code: str, line: str = "", captures: bool = True) -> Located:
    """Where the captures of a marked cell (``line`` its magic's arguments, ``code`` its
    body) go.

    Named outright first: ``JUPYTER_MLOPS_NOTEBOOK``, then what JupyterLab or VS Code told
    the kernel. Else (papermill, nbconvert, any headless run) the candidates are the
    notebooks on the command line of the process that started the kernel, and the notebooks
    in the kernel's working folder; each marked cell keeps those with a marked cell of the
    same code (:func:`~jupyter_mlops.notebook.reader.code_key`). The notebook is chosen when
    the starting process names exactly one of them, or one is left; when a cell that
    captures (``captures``) still finds several, or none is left, the kernel cannot tell.
    The returned ``note`` is non-empty once: with the decision.
    """
    named = _named_notebook(shell)
    if named is not None:
        return Located(named)
    search: _Search | None = getattr(shell, _SEARCH, None)
    if search is None:
        search = _start_search()
        try:
            setattr(shell, _SEARCH, search)
        except (AttributeError, TypeError):  # a shell that takes no attributes: search again
            pass
    if search.decided is None:
        signature = _signature(line, code)
        search.candidates = {p: s for p, s in search.candidates.items() if signature in s}
        search.decided = _decide(search, captures)
        if search.decided is None:
            return Located(None)  # several notebooks still fit; this cell captures nothing
    decided = search.decided
    if search.said:
        return Located(decided.notebook, "", decided.problem)
    search.said = True
    return decided


def kernel_variables(shell: Any) -> list[str]:
    """The user's variables in the kernel: no modules, functions, or IPython's own names."""
    import types

    hidden = getattr(shell, "user_ns_hidden", {})
    return [n for n, v in shell.user_ns.items()
            if not n.startswith("_") and n not in hidden
            and not isinstance(v, (types.ModuleType, types.FunctionType, type))]
