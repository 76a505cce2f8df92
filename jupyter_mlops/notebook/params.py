"""Parameters from a params cell: literal assignments only, with their type and help comment."""

from __future__ import annotations

import ast
import io
import json
import math
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import MlopsError, ParameterError, Problem, shown
from ..runtime._jsonvalues import json_like

_TYPE_NAMES = {int: "int", float: "float", str: "str", bool: "bool", list: "list", dict: "dict",
               type(None): "None"}
_ANNOTATIONS = {"int", "float", "str", "bool", "list", "dict", "None"}


@dataclass
class Parameter:
    """A pipeline parameter: a literal assignment of a params cell."""

    name: str
    type: str
    default: Any
    help: str = ""
    cell: int | None = None

    def parse(self, text: str) -> Any:
        """Read ``text`` (from ``-p NAME=TEXT``) as this parameter's type.

        Raises :class:`ParameterError` naming the parameter, its type and what was given.
        """
        def fail() -> ParameterError:
            return ParameterError(
                f"parameter `{self.name}` is {self.type} (default {shown(self.default)}); "
                f"`{shown(text)}` is not a valid {self.type}"
            )

        if self.type == "str":
            return text
        if self.type == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise fail()
        if self.type == "int":
            try:
                return int(text.strip())
            except ValueError:
                raise fail() from None
        if self.type == "float":
            try:
                return float(text.strip())
            except ValueError:
                raise fail() from None
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                if self.type == "None":
                    return text  # a parameter whose default is None takes any text
                raise fail() from None
        expected = {"list": list, "dict": dict}.get(self.type)
        if (expected is not None and not isinstance(value, expected)) or not json_like(value):
            raise fail()
        return value


def _comments(source: str) -> dict[int, str]:
    """Line number -> the text of a ``# comment`` on that line."""
    found: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                found[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return found


def _type_of(value: Any) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, dict)) and not json_like(value):
        return None
    return _TYPE_NAMES.get(type(value))


def _finite(value: Any) -> bool:
    """No inf or nan anywhere in ``value`` (a number, or a list or dict of them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


def parse_params_cell(source: str, where: str, cell: int) -> tuple[list[Parameter], list[Problem]]:
    """The parameters that a params cell's plain Python assigns, and its problems.

    ``where`` is the "notebook, cell N" prefix of every message.
    """
    parameters: list[Parameter] = []
    problems: list[Problem] = []
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        line = f" on line {err.lineno}" if err.lineno else ""
        return [], [Problem(f"{where} has a syntax error{line}: {err.msg}", cell)]
    comments = _comments(source)

    def problem(node: ast.AST, what: str) -> None:
        text = ast.get_source_segment(source, node) or ""
        text = text.splitlines()[0] if text else ""
        problems.append(Problem(f"{where}: `{text}` {what}", cell))

    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring or a bare literal
        if isinstance(node, ast.Pass):
            continue
        annotation: str | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
            annotation = ast.unparse(node.annotation)
        else:
            problem(node, "is not a parameter; a params cell holds only assignments of "
                          "literal values (NAME = VALUE); move other code to a step or setup cell")
            continue
        if not all(isinstance(t, ast.Name) for t in targets):
            problem(node, "assigns something other than a name; write one `NAME = VALUE` a line")
            continue
        try:
            default = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            problem(node, "is not a literal; parameters must be plain values (numbers, strings, "
                          "True/False, None, lists, dicts); compute it in a step instead"
                    + _literal_hint(value))
            continue
        inferred = _type_of(default)
        if not _finite(default):
            problem(node, "is not a finite number; a parameter cannot be inf or nan (papermill "
                          "and JSON cannot pass them); use a large number or None")
            continue
        if inferred is None:
            problem(node, "has a type that a parameter cannot have; use int, float, str, bool, "
                          "None, or a list/dict of those" + _keys_hint(default))
            continue
        type_name = inferred
        if annotation in _ANNOTATIONS:
            type_name = annotation
            if annotation == "float" and inferred == "int":
                default = float(default)
            elif inferred not in (annotation, "None"):
                problem(node, f"is annotated `{annotation}` but its value is a {inferred}")
                continue
        for target in targets:
            assert isinstance(target, ast.Name)
            parameters.append(Parameter(target.id, type_name, default,
                                        comments.get(node.lineno, ""), cell))
    return parameters, problems


def _literal_hint(value: ast.expr) -> str:
    """For a path written as ``Path("x.csv")``: the string to write instead; for arithmetic
    of numbers (``2**10``): its value."""
    arithmetic = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Constant, ast.operator,
                  ast.unaryop)
    if all(isinstance(n, arithmetic) for n in ast.walk(value)) and all(
            type(n.value) in (int, float) for n in ast.walk(value) if isinstance(n, ast.Constant)
    ) and all(not (isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow)
                   and not (isinstance(n.right, ast.Constant) and abs(n.right.value) <= 64))
              for n in ast.walk(value)):
        if sum(isinstance(n, (ast.Pow, ast.LShift)) for n in ast.walk(value)) > 2 or any(
                isinstance(n, ast.BinOp) and isinstance(n.op, ast.LShift)
                and not (isinstance(n.right, ast.Constant) and abs(n.right.value) <= 64)
                for n in ast.walk(value)):
            return ""
        try:  # numbers and operators only, powers kept small: nothing else can run
            number = eval(compile(ast.Expression(value), "<param>", "eval"), {"__builtins__": {}})
            return f", or write its value, {number!r}"
        except (ArithmeticError, ValueError, TypeError):  # 1/0; too many digits to show
            return ""
    if (isinstance(value, ast.Call) and isinstance(value.func, (ast.Name, ast.Attribute))
            and (value.func.id if isinstance(value.func, ast.Name) else value.func.attr)
            in ("Path", "PurePath", "PosixPath") and len(value.args) == 1
            and isinstance(value.args[0], ast.Constant) and isinstance(value.args[0].value, str)
            and not value.keywords):
        return (f", or make it the string {value.args[0].value!r} and call Path() on it "
                "where it is used")
    return ""


def _keys_hint(default: Any) -> str:
    """For a dict with keys other than strings (``{0: "neg"}``): that JSON keys are strings."""
    def keys(value: Any) -> bool:
        if isinstance(value, dict):
            return any(not isinstance(k, str) for k in value) or any(map(keys, value.values()))
        return isinstance(value, (list, tuple)) and any(map(keys, value))

    if keys(default):
        return ("; a dict's keys must be strings (papermill passes parameters as JSON): "
                "write {\"0\": ...} and convert where it is used")
    return ""


def capture_params(code: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Each literal assignment of a params cell: its value (as it is now) and type."""
    parameters, problems = parse_params_cell(code, "this cell", 0)
    if problems:
        raise MlopsError(problems[0].message.replace("this cell: ", ""))
    return {p.name: {"value": namespace.get(p.name, p.default), "type": p.type, "help": p.help}
            for p in parameters}
