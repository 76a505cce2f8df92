"""The cell-role vocabulary: parsing ``%%mlops ROLE ...`` lines and ``mlops:ROLE[=ARG]`` tags.

Both spellings produce the same :class:`Mark`. The kernel-side magic and the notebook reader
share this module, so a cell means the same thing wherever it is read.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from ..errors import RoleError

ROLES: tuple[str, ...] = ("setup", "params", "step", "data", "model", "metrics", "skip",
                          "prepare")
#: Roles that only declare a step's outputs; the cell itself joins the current step.
OUTPUT_ROLES: frozenset[str] = frozenset({"data", "model", "metrics"})
#: Roles a cell may have and also prepare data for prediction (``--prepare``, or the tag
#: ``mlops:prepare`` beside the role's tag): a cell preparing data the same way for training
#: and for new records, replayed by ``serve`` and ``predict``.
PREPARE_WITH: frozenset[str] = frozenset({"step", "data", "prepare"})

#: A step's name, matched whole (``fullmatch``: ``$`` alone would let a trailing newline in).
STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Tags of other tools that mean one of our roles (Kale's and papermill's).
_FOREIGN_TAGS: dict[str, str] = {
    "parameters": "params",
    "injected-parameters": "params",
    "pipeline-parameters": "params",
    "imports": "setup",
    "functions": "setup",
    "pipeline-metrics": "metrics",
    "skip": "skip",
}


@dataclass(frozen=True)
class Mark:
    """What a cell's magic line or tags say about it."""

    role: str
    name: str | None = None
    after: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    minimums: tuple[tuple[str, float], ...] = ()
    maximums: tuple[tuple[str, float], ...] = ()
    spelling: str = "magic"
    #: Kale's ``block:NAME`` repeated on several cells continues one step.
    continues: bool = field(default=False, compare=False)
    #: The cell prepares data for prediction too (``%%mlops prepare``, ``--prepare``).
    prepare: bool = False


def _roles_hint() -> str:
    return "use one of " + ", ".join(ROLES)


def _check_step_name(name: str, spelling: str) -> str:
    if not STEP_NAME.fullmatch(name):
        raise RoleError(
            f"step name `{name}` in {spelling} is not valid; use letters, digits, `_` or `-`, "
            "starting with a letter"
        )
    return name


def _check_variable(name: str, spelling: str) -> str:
    if not _IDENTIFIER.match(name):
        raise RoleError(f"`{name}` in {spelling} is not a Python variable name")
    return name


def _threshold(token: str, option: str, spelling: str) -> tuple[str, float]:
    name, sep, value = token.partition("=")
    if not sep:
        raise RoleError(f"{option} in {spelling} needs NAME=VALUE, got `{token}`")
    _check_variable(name, spelling)
    try:
        return name, float(value)
    except ValueError:
        raise RoleError(f"{option} {name}= in {spelling} needs a number, got `{value}`") from None


def parse_magic_line(args: str) -> Mark:
    """Parse what follows ``%%mlops`` on a cell's first line, e.g. ``step train --after load``.

    Raises :class:`RoleError` with a message that says what to write instead.
    """
    spelling = f"`%%mlops {args.strip()}`"
    try:
        tokens = shlex.split(args)
    except ValueError as err:
        raise RoleError(f"cannot read {spelling}: {err}") from None
    if not tokens:
        raise RoleError(f"`%%mlops` needs a role; {_roles_hint()}")
    role, rest = tokens[0], tokens[1:]
    if role not in ROLES:
        raise RoleError(f"unknown role `{role}` in {spelling}; {_roles_hint()}")

    positional: list[str] = []
    options: dict[str, list[str]] = {}
    current: list[str] = positional
    prepare = role == "prepare"
    if "--prepare" in rest:
        if role not in PREPARE_WITH:
            raise RoleError(f"`--prepare` in {spelling}: a {role} cell does not prepare data; "
                            "use it on a step or data cell, or mark the cell `%%mlops prepare`")
        prepare, rest = True, [t for t in rest if t != "--prepare"]
    for token in rest:
        if token.startswith("--"):
            option = token
            allowed = {"step": {"--after"}, "metrics": {"--min", "--max"}}.get(role, set())
            if option not in allowed:
                hint = f"; {role} accepts {', '.join(sorted(allowed))}" if allowed else ""
                raise RoleError(f"unknown option `{option}` in {spelling}{hint}")
            current = options.setdefault(option, [])
        else:
            current.append(token)

    if role == "step":
        if len(positional) != 1:
            raise RoleError(f"{spelling} needs exactly one step name, e.g. `%%mlops step train`")
        after = tuple(_check_step_name(a, spelling) for a in options.get("--after", []))
        if "--after" in options and not after:
            raise RoleError(f"`--after` in {spelling} needs at least one step name")
        return Mark("step", name=_check_step_name(positional[0], spelling), after=after,
                    prepare=prepare)
    if role in ("setup", "params", "skip", "prepare"):
        if positional:
            raise RoleError(f"`%%mlops {role}` takes no arguments, got {spelling}")
        return Mark(role, prepare=prepare)
    if role == "model" and len(positional) > 1:
        raise RoleError(f"{spelling} names at most one model variable")
    variables = tuple(_check_variable(v, spelling) for v in positional)
    minimums = tuple(_threshold(t, "--min", spelling) for t in options.get("--min", []))
    maximums = tuple(_threshold(t, "--max", spelling) for t in options.get("--max", []))
    return Mark(role, variables=variables, minimums=minimums, maximums=maximums,
                prepare=prepare)


def parse_tags(tags: list[str]) -> list[Mark]:
    """The marks that a cell's tags carry, ours (``mlops:ROLE[=ARG]``) and foreign ones.

    ``mlops:after=A,B`` and Kale's ``prev:NAME`` come back as ``Mark("after", after=...)``,
    a modifier that the reader folds into the cell's step mark.
    """
    marks: list[Mark] = []
    for tag in tags:
        if not isinstance(tag, str):
            continue
        spelling = f"tag `{tag}`"
        if tag.startswith("mlops:"):
            role, _, arg = tag[len("mlops:"):].partition("=")
            items = [a for a in arg.split(",") if a]
            if role == "after":
                names = tuple(_check_step_name(a, spelling) for a in items)
                if not names:
                    raise RoleError(f"{spelling} needs step names, e.g. `mlops:after=load`")
                marks.append(Mark("after", after=names, spelling="tag"))
                continue
            if role not in ROLES:
                raise RoleError(f"unknown role `{role}` in {spelling}; {_roles_hint()}")
            if role == "step":
                if len(items) != 1:
                    raise RoleError(f"{spelling} needs one step name, e.g. `mlops:step=train`")
                name = _check_step_name(items[0], spelling)
                marks.append(Mark("step", name=name, spelling="tag"))
            elif role in ("setup", "params", "skip", "prepare"):
                if items:
                    raise RoleError(f"{spelling}: `{role}` takes no argument")
                marks.append(Mark(role, spelling="tag"))
            else:
                if role == "model" and len(items) > 1:
                    raise RoleError(f"{spelling} names at most one model variable")
                variables = tuple(_check_variable(v, spelling) for v in items)
                marks.append(Mark(role, variables=variables, spelling="tag"))
        elif tag.startswith(("step:", "block:")):
            name = tag.split(":", 1)[1]
            if name:  # Kale writes `block:` with no name for an anonymous step
                marks.append(
                    Mark("step", name=_check_step_name(name, spelling), spelling="kale",
                         continues=True)
                )
        elif tag.startswith("prev:"):
            name = tag.split(":", 1)[1]
            marks.append(Mark("after", after=(_check_step_name(name, spelling),), spelling="kale"))
        elif tag in _FOREIGN_TAGS:
            marks.append(Mark(_FOREIGN_TAGS[tag], spelling="tag"))
    return _fold(marks)


def _fold(marks: list[Mark]) -> list[Mark]:
    """One mark per role: ``mlops:data=X`` and ``mlops:data=y`` are ``data X y``."""
    folded: dict[tuple[str, str | None], Mark] = {}
    for mark in marks:
        key = (mark.role, mark.name)
        if key in folded:
            old = folded[key]
            mark = Mark(old.role, name=old.name,
                        after=tuple(dict.fromkeys(old.after + mark.after)),
                        variables=tuple(dict.fromkeys(old.variables + mark.variables)),
                        spelling=old.spelling, continues=old.continues and mark.continues)
        folded[key] = mark
    return list(folded.values())


def mark_to_tags(mark: Mark) -> list[str]:
    """The ``mlops:`` tags that spell ``mark`` (what the sidebar writes).

    One tag per name: nbformat forbids commas in tags, and the reader merges repeated tags.
    """
    prepare = ["mlops:prepare"] if mark.prepare and mark.role != "prepare" else []
    if mark.role == "step":
        return [f"mlops:step={mark.name}"] + [f"mlops:after={a}" for a in mark.after] + prepare
    if mark.variables:
        return [f"mlops:{mark.role}={v}" for v in mark.variables] + prepare
    return [f"mlops:{mark.role}", *prepare]
