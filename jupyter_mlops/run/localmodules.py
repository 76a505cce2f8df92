"""The user's own modules a step imports: files and packages beside the notebook (a
``utils.py``, a ``features/`` package), found by the step's imports and, from those, by
theirs. A step's cache key covers their text as it covers the data files the step names:
an edited helper makes the steps that import it run again, instead of reusing results its
old text made."""

from __future__ import annotations

import ast
import json
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

from ..runtime._files import sha256_file, sha256_text

__all__ = ["local_modules", "module_fingerprints"]


def local_modules(workdir: Path, modules: Iterable[str]) -> list[Path]:
    """The modules of ``modules`` (top-level names) that are files or packages in
    ``workdir``, where a step's kernel runs: there they come before installed ones."""
    found = []
    for module in modules:
        if module in sys.builtin_module_names:  # built in: no file of the folder shadows it
            continue
        single, package = workdir / f"{module}.py", workdir / module
        if single.is_file():
            found.append(single)
        elif (package / "__init__.py").is_file() or (
                module not in sys.stdlib_module_names and any(package.glob("*.py"))):
            # a folder without one is a namespace package, which a module of that name of
            # the standard library comes before (a `json/` folder of data and scripts)
            found.append(package)
    return found


def module_fingerprints(workdir: Path, modules: Iterable[str]) -> dict[str, str]:
    """``{"import NAME": sha256}`` of each of ``modules`` that is local (:func:`local_modules`)
    and of the local modules those import, at any depth: of a module's file, or of every
    ``.py`` file of a package (with their paths). A file that cannot be read counts by its
    absence; one that cannot be parsed, by its text."""
    found: dict[str, str] = {}
    todo, seen = list(modules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for path in local_modules(workdir, [name]):
            files = [path] if path.is_file() else sorted(
                p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
            listing = []
            for file in files:
                try:
                    listing.append([file.relative_to(workdir).as_posix(), sha256_file(file)])
                    todo.extend(_imported(file.read_bytes()))
                except OSError:
                    continue
            found[f"import {name}"] = sha256_text(json.dumps(listing))
    return found


def _imported(source: bytes) -> list[str]:
    """The top-level names of the modules ``source`` imports (not relative imports: those
    are inside its own package, which is hashed whole)."""
    with warnings.catch_warnings():  # an old helper's "\s" is its author's to hear of
        warnings.simplefilter("ignore")
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            return []
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return names
