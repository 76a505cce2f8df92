"""The one place where values become text inside generated code, one helper per language.

Generators (step notebooks, generated tests, the Airflow DAG, the Kubeflow pipeline and
Dockerfile, HTML reports, the pipeline README) put a value into their output only through
these functions, so a notebook name, a parameter default, a path or a kernel name can never
end a string, start a command or add an instruction, whatever characters it holds.
"""

from __future__ import annotations

import ast
import html
import json
import math
import shlex
from collections.abc import Iterable
from typing import Any

__all__ = ["QuotingError", "dockerfile_comment", "dockerfile_exec", "dockerfile_path",
           "html_text", "markdown_code", "markdown_table", "python_comment", "python_literal",
           "python_text", "shell_word", "yaml_text"]


class QuotingError(ValueError):
    """A value that has no safe spelling in the target language."""


# -- Python ------------------------------------------------------------------------------

def _check_literal(value: Any) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):  # repr gives `inf`/`nan`, which are names, not literals
            raise QuotingError(f"{value!r} has no Python literal; use a finite number")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_literal(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _check_literal(key)
            _check_literal(item)
        return
    raise QuotingError(f"a {type(value).__name__} has no Python literal")


def python_literal(value: Any) -> str:
    """Python source that evaluates to ``value`` (None, bools, numbers, strings, and lists,
    tuples and dicts of them); QuotingError for anything else, inf and nan included.

    ``repr`` of these types is a literal that ``ast.literal_eval`` reads back; the check
    below keeps it that way for every value that reaches generated code.
    """
    _check_literal(value)
    text = repr(value)
    if ast.literal_eval(text) != value:
        raise QuotingError(f"{text[:60]} does not read back as the same value")
    return text


def python_text(text: str) -> str:
    """``text`` as it may stand inside a ``\"\"\"`` docstring or a comment of generated
    Python: backslashes and quotes escaped, line breaks made spaces."""
    flat = " ".join(str(text).splitlines()) if text else ""
    return flat.replace("\\", "\\\\").replace('"', '\\"')


def python_comment(text: str) -> str:
    """``text`` for the rest of a ``#`` comment line: a line break would start code."""
    return " ".join(str(text).splitlines())


# -- shell and Dockerfile ----------------------------------------------------------------

def shell_word(value: Any) -> str:
    """``value`` as one word of a POSIX shell command (``shlex.quote``)."""
    return shlex.quote(str(value))


def dockerfile_exec(words: Iterable[Any]) -> str:
    """The exec form of a ``RUN``/``CMD``/``COPY`` instruction: a JSON array of strings, which
    no shell reads and in which a line break is ``\\n``, not a new instruction."""
    return json.dumps([str(w) for w in words])


def dockerfile_comment(text: str) -> str:
    """``text`` for a ``#`` comment line: line breaks would start instructions."""
    return " ".join(str(text).splitlines())


def dockerfile_path(path: str) -> str:
    """A path for ``WORKDIR`` (which has no exec form); QuotingError if it holds a line break
    or a character Docker would read as a variable or an escape."""
    if any(c in path for c in "\n\r$\\\"'") or not path.strip():
        raise QuotingError(f"the path {path!r:.80} cannot be a Dockerfile WORKDIR; rename the "
                           "folder to one without quotes, `$`, backslashes or line breaks")
    return path


# -- YAML, HTML, Markdown ----------------------------------------------------------------

def yaml_text(data: Any) -> str:
    """A YAML document of plain ``data`` (PyYAML's safe dumper: no tags, no aliases)."""
    import yaml

    class _NoAliases(yaml.SafeDumper):
        def ignore_aliases(self, data: Any) -> bool:
            return True

    return yaml.dump(data, Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=100)


def html_text(value: Any) -> str:
    """``value`` as HTML text or an attribute value (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def markdown_code(value: Any) -> str:
    """``value`` as an inline Markdown code span: a fence longer than any run of backticks
    inside, line breaks made spaces, so the text cannot leave the span."""
    text = " ".join(str(value).splitlines())
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_table(value: Any) -> str:
    """``value`` as the text of one Markdown table cell: one line, ``|`` escaped so it cannot
    open a column, and ``<``/``&`` as entities so it cannot open HTML."""
    text = " ".join(str(value).splitlines())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")
