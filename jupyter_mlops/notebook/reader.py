"""Reading a notebook: nbformat in, a list of cells with their role and code out.

All syntax is resolved here and nowhere else: ``%%mlops`` first lines, ``mlops:`` tags,
papermill's and Kale's tags, and IPython syntax (magics, ``!`` lines), which becomes plain
Python for the analysis.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import NotebookError, Problem, RoleError, shown
from .roles import PREPARE_WITH, Mark, parse_magic_line, parse_tags

#: A lone UTF-16 surrogate (from a ``\ud800`` escape in the JSON): not text that can be
#: written, hashed or run, so every later step would fail on it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
#: ``%%mlops ROLE`` as a cell's first line, or the line form ``%mlops ROLE``.
_MLOPS_LINE = re.compile(r"^%%?mlops(?:[ \t]+(?P<args>.*))?$")
#: Cell magics whose body runs in the user's namespace as ordinary Python.
_PASS_THROUGH_MAGICS = re.compile(r"^%%(time|capture|prun)\b[^\n]*\n?")
#: The line magic ``%time STATEMENT``, which runs the statement in the user's namespace
#: (``%timeit`` runs it in a namespace of its own: its names stay there).
_TIME_LINE = re.compile(r"^([ \t]*)%time[ \t]+(?=\S)", re.MULTILINE)
_BLANK_LINES = re.compile(r"^(?:[ \t]*\r?\n)+")
_HEADING2 = re.compile(r"^##[ \t]+(?P<title>\S.*?)[ \t#]*$", re.MULTILINE)


@dataclass
class Cell:
    """One cell of the source notebook, with its role resolved."""

    index: int
    cell_type: str
    source: str
    #: The source without the ``%%mlops`` first line: what a step notebook will run.
    code: str = ""
    #: Plain Python for the analysis (IPython syntax transformed), "" for non-code cells.
    python: str = ""
    #: Lines of ``source`` before the first line of ``python`` (a magic line, blank lines).
    line_offset: int = 0
    mark: Mark | None = None
    cell_id: str | None = None
    execution_count: int | None = None
    tags: list[str] = field(default_factory=list)
    #: The cell prepares data the same way for training and for new records (``serve``).
    prepare: bool = False

    @property
    def number(self) -> int:
        """The 1-based cell number, as JupyterLab shows and users count."""
        return self.index + 1

    @property
    def role(self) -> str | None:
        """The cell's role, or None for an unmarked cell."""
        return self.mark.role if self.mark else None

    def heading(self) -> str | None:
        """The first level-2 markdown heading of a markdown cell, if any."""
        if self.cell_type != "markdown":
            return None
        match = _HEADING2.search(self.source)
        return match.group("title") if match else None


@dataclass
class SourceNotebook:
    """A notebook read from disk: its cells, kernel and the problems its syntax has."""

    path: Path
    cells: list[Cell]
    metadata: dict[str, Any]
    sha256: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The notebook's file name, used in every message about it."""
        return self.path.name

    @property
    def kernelspec(self) -> dict[str, Any]:
        """The source's kernelspec (python3 when the notebook names none)."""
        spec = self.metadata.get("kernelspec") or {}
        return {
            "name": spec.get("name") or "python3",
            "display_name": spec.get("display_name") or "Python 3 (ipykernel)",
            "language": spec.get("language") or "python",
        }


def read_notebook(path: str | Path) -> SourceNotebook:
    """Read ``path`` and resolve every cell's role.

    Raises :class:`NotebookError` when the file is not an nbformat 4 notebook; role problems
    are collected in ``problems`` so that all of them can be shown at once.
    """
    path = Path(path)
    return parse_notebook(read_regular_file(path, "notebook"), path)


def read_regular_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``, a regular file; :class:`NotebookError` in one line otherwise.

    Opened without blocking and checked before reading: a named pipe or a device would
    otherwise hang the reader or never end.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise NotebookError(f"{path}: no such {what}; check the path") from None
    except OSError as err:
        raise NotebookError(f"{path}: cannot read it ({err.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise NotebookError(f"{path} is a folder, not a {what} (.ipynb file)")
        raise NotebookError(f"{path} is not a regular file (a named pipe, socket or device); "
                            f"give the path of a {what} file")
    with os.fdopen(fd, "rb") as file:
        try:
            return file.read()
        except OSError as err:
            raise NotebookError(f"{path}: cannot read it ({err.strerror})") from None


def parse_notebook(raw: bytes | str, path: str | Path = "notebook.ipynb") -> SourceNotebook:
    """Parse notebook JSON (bytes or text) that came from ``path``."""
    path = Path(path)
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return from_dict(load_json(data, path.name), path, hashlib.sha256(data).hexdigest())


def load_json(data: bytes, name: str,
              fix: str = "open it in JupyterLab or restore it from version control") -> Any:
    """The JSON of the notebook file ``name`` (a source notebook, or a step notebook of a
    pipeline with its own ``fix``); :class:`NotebookError` in one line if Python cannot read
    it: not JSON, nested deeper than Python's stack, or a number too long to convert."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        where = f" (line {err.lineno}, column {err.colno})" if hasattr(err, "lineno") else ""
        raise NotebookError(f"{name} is not a notebook: it is not valid JSON{where}; "
                            f"{fix}") from None
    except RecursionError:  # json nests by recursion; Python's stack ends near 1,000 levels
        raise NotebookError(f"{name} is not a notebook jupyter-mlops can read: its JSON nests "
                            f"lists or objects too deeply; {fix}") from None
    except ValueError as err:  # an integer longer than sys.get_int_max_str_digits() digits
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()  # 3.11+; 3.9 kernels
        what = (f"a number of more than {limit} digits"
                if "digits" in str(err) else f"a value Python cannot read ({err})")
        raise NotebookError(f"{name} is not a notebook jupyter-mlops can read: it holds "
                            f"{what}; {fix}") from None


def _require(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise NotebookError(f"{path.name} is not a valid notebook: {what}")


def _check_text(value: Any, path: Path, where: str) -> None:
    """Refuse a lone surrogate anywhere in ``value`` (a string, or JSON holding strings),
    naming ``where`` it is: such text cannot be written, hashed or run."""
    stack = [value]
    while stack:  # by hand, not recursion: metadata may nest as deep as JSON allows
        item = stack.pop()
        if isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item
        elif isinstance(item, str) and (match := _SURROGATE.search(item)):
            at = f", line {item.count(chr(10), 0, match.start()) + 1}" if item is value else ""
            raise NotebookError(
                f"{path.name}, {where}{at} holds a broken character (a lone UTF-16 surrogate, "
                f"\\u{ord(match.group()):04x}, which is not text); delete it or type it again "
                "in JupyterLab")


def from_dict(content: Any, path: Path, sha256: str = "") -> SourceNotebook:
    """Check the notebook structure that jupyter-mlops relies on and resolve the cells."""
    _require(isinstance(content, dict), path, "the top level is not a JSON object")
    major = content.get("nbformat")
    _require(major is not None, path, "the `nbformat` field is missing")
    if not isinstance(major, int) or isinstance(major, bool):
        raise NotebookError(f"{path.name}: its `nbformat` field is {shown(major)}, not the "
                            "number 4; open it in JupyterLab or restore it from version control")
    if major != 4:
        raise NotebookError(
            f"{path.name} is nbformat {major}; jupyter-mlops reads nbformat 4: convert it with "
            f"`jupyter nbconvert --to notebook --nbformat 4 {path.name}`"
        )
    cells = content.get("cells")
    _require(isinstance(cells, list), path, "the `cells` list is missing")
    metadata = content.get("metadata", {})
    _require(isinstance(metadata, dict), path, "`metadata` is not an object")
    _check_text(metadata, path, "its metadata")
    for key in ("kernelspec", "language_info"):
        _require(isinstance(metadata.get(key) or {}, dict), path,
                 f"`metadata.{key}` is not an object")
    language = (metadata.get("kernelspec") or {}).get("language") or (
        metadata.get("language_info") or {}
    ).get("name", "python")
    if language != "python":
        raise NotebookError(
            f"{path.name} uses a {language} kernel; jupyter-mlops exports Python notebooks"
        )

    result = SourceNotebook(path=path, cells=[], metadata=metadata, sha256=sha256)
    for index, raw_cell in enumerate(cells):
        _require(isinstance(raw_cell, dict), path, f"cell {index + 1} is not an object")
        cell_type = raw_cell.get("cell_type")
        _require(
            cell_type in ("code", "markdown", "raw"),
            path,
            f"cell {index + 1} has no valid `cell_type` (code, markdown or raw)",
        )
        source = raw_cell.get("source", None)
        _require(source is not None, path, f"cell {index + 1} has no `source`")
        if isinstance(source, list):
            _require(all(isinstance(s, str) for s in source), path,
                     f"cell {index + 1} has a `source` that is not text")
            source = "".join(source)
        _require(isinstance(source, str), path, f"cell {index + 1} has a `source` that is not text")
        cell_meta = raw_cell.get("metadata") or {}
        _require(isinstance(cell_meta, dict), path, f"cell {index + 1} has `metadata` that is "
                 "not an object")
        _check_text(source, path, f"cell {index + 1}")
        _check_text([cell_meta, raw_cell.get("id")], path, f"the metadata of cell {index + 1}")
        tags = cell_meta.get("tags") or []
        _require(isinstance(tags, list), path, f"cell {index + 1} has `tags` that are not a list")
        cell = Cell(
            index=index,
            cell_type=cell_type,
            source=source,
            cell_id=raw_cell.get("id"),
            execution_count=raw_cell.get("execution_count"),
            tags=[t for t in tags if isinstance(t, str)],
        )
        if cell_type == "code":
            _resolve_code_cell(cell, path, result.problems)
        result.cells.append(cell)
    return result


def _split_magic_line(source: str) -> tuple[str | None, str]:
    """(the args of a ``%%mlops`` first line or None, the rest of the cell)."""
    # IPython drops leading blank lines before it looks for a cell magic; so do we.
    stripped = _BLANK_LINES.sub("", source)
    first, _, rest = stripped.partition("\n")
    match = _MLOPS_LINE.match(first.rstrip())
    if match is None:
        return None, source
    return match.group("args") or "", rest


def _lines_before(whole: str, part: str) -> int:
    """How many lines of ``whole`` come before its tail ``part``."""
    if not part or not whole.endswith(part):
        return 0
    return whole[: len(whole) - len(part)].count("\n")


def _resolve_code_cell(cell: Cell, path: Path, problems: list[Problem]) -> None:
    where = f"{path.name}, cell {cell.number}"
    args, cell.code = _split_magic_line(cell.source)
    marks: list[Mark] = []
    try:
        if args is not None and args.split()[:1] in (["status"], ["panel"]):
            # `%mlops status` / `%mlops panel` look at the notebook; no pipeline runs them
            marks.append(Mark("skip"))
        elif args is not None:
            marks.append(parse_magic_line(args))
        marks.extend(parse_tags(cell.tags))
    except RoleError as err:
        problems.append(Problem(f"{where}: {err}", cell.number))
        marks = []

    after = tuple(a for m in marks if m.role == "after" for a in m.after)
    cell.prepare = any(m.prepare or m.role == "prepare" for m in marks)
    # `prepare` beside another role (a tag, or --prepare) only says the cell prepares too
    roles = [m for m in marks if m.role != "after" and not (
        m.role == "prepare" and any(o.role not in ("after", "prepare") for o in marks))]
    distinct = {(m.role, m.name) for m in roles}
    if len(distinct) > 1:
        described = ", ".join(
            sorted({f"`{m.role}{' ' + m.name if m.name else ''}` ({m.spelling})" for m in roles})
        )
        problems.append(Problem(f"{where} has more than one role: {described}; keep one",
                                cell.number))
    elif roles:
        cell.mark = _merge(roles, after)
        if cell.prepare and cell.mark.role not in PREPARE_WITH:
            problems.append(Problem(
                f"{where}: a {cell.mark.role} cell does not prepare data for prediction; "
                "mark prepare on the step or data cells that turn the loaded frame into the "
                "model's input", cell.number))
            cell.prepare = False
    elif after:
        problems.append(Problem(
            f"{where}: `after` works only on a step cell; add `mlops:step=NAME` or remove it",
            cell.number))

    cell.python = to_python(cell.code)
    unwrapped = _unwrap_pass_through(cell.code)
    cell.line_offset = _lines_before(cell.source, unwrapped)


def _merge(marks: list[Mark], after: tuple[str, ...]) -> Mark:
    """Fold marks of one role (a magic and tags saying the same) into one."""
    first = marks[0]
    variables = tuple(dict.fromkeys(v for m in marks for v in m.variables))
    all_after = tuple(dict.fromkeys(first.after + after))
    return Mark(
        first.role,
        name=first.name,
        after=all_after,
        variables=variables,
        minimums=first.minimums,
        maximums=first.maximums,
        spelling=first.spelling,
        continues=all(m.continues for m in marks),
        prepare=any(m.prepare for m in marks),
    )


def _unwrap_pass_through(code: str) -> str:
    """The body of ``%%time`` / ``%%capture`` cells (repeatedly), else ``code``."""
    while True:
        stripped = _BLANK_LINES.sub("", code)
        match = _PASS_THROUGH_MAGICS.match(stripped)
        if not match:
            return code
        code = stripped[match.end():]


@functools.lru_cache(maxsize=16384)  # hashed again for every step at each analysis
def normalised_python(python: str) -> str:
    """Plain Python without comments or formatting (its AST), so a comment-only edit keeps
    every hash made from it."""
    import ast

    try:
        return ast.dump(ast.parse(python))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # code Python cannot read (the analysis says why, by cell) is hashed as written
        return python


def code_key(code: str) -> str:
    """A short key for a cell's code, the same in the notebook and in a step notebook: ties
    a captured data profile to the cell that made it."""
    # as before %time lines were analysed: records captured by earlier versions still match
    python = _ipython(_unwrap_pass_through(code))
    return hashlib.sha256(normalised_python(python).encode("utf-8")).hexdigest()[:12]


def to_python(code: str) -> str:
    """Turn IPython syntax (magics, ``!`` lines, ``?`` help) into plain Python.

    The body of a pass-through cell magic (``%%time``, ``%%capture``) is kept as code, since
    it runs in the user's namespace, and so is the statement of a ``%time`` line (``%time
    model.fit(X, y)`` uses ``X``; ``%time X = load()`` defines it). Plain Python skips
    IPython entirely, which keeps analysing a large notebook fast.
    """
    return _ipython(_TIME_LINE.sub(r"\1", _unwrap_pass_through(code)))


def _ipython(code: str) -> str:
    """``code`` with IPython's syntax made Python by IPython's own transformer."""
    if not any(ch in code for ch in "%!?"):
        return code
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(code)
