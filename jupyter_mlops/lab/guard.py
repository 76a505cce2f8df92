"""What a request to the server extension may name: JSON object bodies, and paths that stay
inside the server's root and are visible to its contents API.

Every handler reads its body with :func:`parse_body` and its paths with :func:`resolve_inside`
and :func:`check_inside`, so a hostile input (a NUL, a path longer than the OS allows, a body
nested a hundred thousand levels deep, a symbolic link out of the root, a hidden folder) is
refused in one place, as :class:`Refused` with a status and one line, before any file is read
or written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import printable as shown

#: The longest path (bytes) and file name (bytes) accepted, as Linux's PATH_MAX and NAME_MAX.
MAX_PATH = 4096
MAX_NAME = 255
#: How deeply a request body may nest objects and lists (ours nest two levels).
MAX_DEPTH = 32
#: What a request body looks like, for messages.
EXAMPLE = '{"path": "folder/notebook.ipynb"}'


class Refused(Exception):
    """A request the server will not carry out: its HTTP status and the one line to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_body(raw: bytes | None) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body), or :class:`Refused` 400."""
    try:
        data = json.loads(raw or b"{}")
    except RecursionError:
        raise Refused(400, f"the request body is nested more deeply than JSON is read here "
                           f"({MAX_DEPTH} levels at most); send an object such as "
                           f"{EXAMPLE}") from None
    except ValueError as err:  # UnicodeDecodeError included
        raise Refused(400, f"the request body is not JSON ({shown(str(err), 80)}); send an "
                           f"object such as {EXAMPLE}") from None
    if not isinstance(data, dict):
        raise Refused(400, f"the request body must be a JSON object such as {EXAMPLE}, not "
                           f"{type(data).__name__ if data is not None else 'null'}")
    if _depth(data) > MAX_DEPTH:
        raise Refused(400, f"the request body is nested more than {MAX_DEPTH} levels deep; "
                           f"send an object such as {EXAMPLE}")
    return data


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (without recursion)."""
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:  # deeper than that is refused anyway
                todo.extend((child, level + 1)
                            for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def resolve_inside(root: Path, relative: Any, what: str, allow_hidden: bool) -> Path:
    """``relative`` (a path as the contents API spells it) resolved inside ``root``.

    Refused: a missing or non-string path, control characters, a path too long for the OS
    (400); an absolute path or one resolving outside the root, symbolic links followed (403);
    a hidden file or folder, or one reached through a hidden folder, unless ``allow_hidden``
    (404, as the contents API answers for it).
    """
    if relative is None or (isinstance(relative, str) and not relative.strip()):
        raise Refused(400, f"missing `{what}`: a path relative to the server's root")
    if not isinstance(relative, str):
        raise Refused(400, f"`{what}` must be a string, a path relative to the server's root, "
                           f"not {type(relative).__name__}")
    _check_spelling(relative, what)
    if Path(relative).is_absolute() or relative.startswith(("/", "\\")):
        raise Refused(403, f"`{shown(relative)}` is an absolute path; give {what} relative to "
                           "the server's root")
    path = _resolved(root / relative, relative)
    if not path.is_relative_to(root):
        raise Refused(403, f"`{shown(relative)}` is outside the server's root directory")
    if not allow_hidden and _hidden(root, relative, path):
        raise Refused(404, f"`{shown(relative)}` is hidden (a name starting with a dot on its "
                           "way), and this server does not serve hidden files; move it to a "
                           "visible folder, or start the server with "
                           "--ContentsManager.allow_hidden=True")
    return path


def check_inside(root: Path, folder: Path, names: Iterable[str] = ()) -> None:
    """Refuse (403) when ``folder``, or any of ``names`` in it, is (or passes through) a
    symbolic link resolving outside ``root``: what is written there would land outside."""
    for path in (folder, *(folder / name for name in names)):
        real = _resolved(path, str(path))
        if not real.is_relative_to(root):
            where = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            raise Refused(403, f"`{shown(where)}` is a symbolic link leading outside the "
                               "server's root directory; replace it with a folder inside the "
                               "root, or use `jupyter mlops` on the command line")


def relative_to(root: Path, path: Any) -> str:
    """``path`` as the contents API spells it, or "" when it is not a path inside ``root``."""
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except (ValueError, TypeError, OSError, RuntimeError):
        return ""


def _check_spelling(relative: str, what: str) -> None:
    """400 for what no file name on this server can hold."""
    if any(ord(c) < 32 or ord(c) == 127 for c in relative):
        raise Refused(400, f"`{what}` holds a control character (`{shown(relative)}`); give "
                           "the path as the file browser shows it")
    try:
        encoded = os.fsencode(relative)
    except UnicodeError:
        raise Refused(400, f"`{what}` is not a valid file name (`{shown(relative)}`); give the "
                           "path as the file browser shows it") from None
    if len(encoded) > MAX_PATH:
        raise Refused(400, f"`{what}` is {len(relative):,} characters long, more than a path "
                           f"may be ({MAX_PATH:,} bytes); give a shorter path")
    if any(len(part) > MAX_NAME for part in encoded.split(b"/")):
        raise Refused(400, f"a name in `{what}` is longer than a file name may be "
                           f"({MAX_NAME} bytes); give a shorter path")


def _resolved(path: Path, given: str) -> Path:
    """``path`` with every symbolic link resolved; 400 for a loop or an unreadable path."""
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13 reports a symlink loop so
        raise Refused(400, f"`{shown(given)}` is a loop of symbolic links; remove the "
                           "link") from None
    except (OSError, ValueError) as err:
        raise Refused(400, f"`{shown(given)}` cannot be resolved "
                           f"({shown(getattr(err, 'strerror', None) or str(err))}); give "
                           "another path") from None


def _hidden(root: Path, relative: str, path: Path) -> bool:
    """Whether the path as given, or as resolved, is hidden under ``root`` (as Jupyter tells)."""
    from jupyter_core.paths import is_hidden

    given = Path(os.path.normpath(relative)).parts
    if any(part.startswith(".") and part not in (".", "..") for part in given):
        return True
    try:
        return is_hidden(str(path), str(root))
    except (OSError, ValueError):
        return True
