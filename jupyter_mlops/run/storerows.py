"""Rows of the run store read back into records, each value checked to be what
jupyter-mlops wrote: a row edited or damaged outside it is :class:`Damaged`, naming the
value, so that one damaged run cannot stop the others being read."""

from __future__ import annotations

import json
from typing import Any

from .records import RunRecord, StepRecord

__all__ = ["Damaged", "decode", "manifest", "number", "run_record", "step_record"]


class Damaged(Exception):
    """A row of the store that does not hold what jupyter-mlops wrote (edited or damaged
    outside it); the message says which value."""


def decode(text: Any, kind: type, what: str) -> Any:
    """The JSON value of a column, of type ``kind``; :class:`Damaged` naming ``what``."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError, RecursionError):
        raise Damaged(f"{what} is not valid JSON") from None
    if not isinstance(value, kind):
        raise Damaged(f"{what} is not a JSON {'list' if kind is list else 'object'}")
    return value


def number(value: Any, what: str, optional: bool = False) -> Any:
    """``value`` if it is a number (or None when ``optional``); :class:`Damaged` else."""
    if (value is None and optional) or (isinstance(value, (int, float))
                                        and not isinstance(value, bool)):
        return value
    raise Damaged(f"{what} is not a number")


def manifest(name: str, text: Any) -> dict[str, Any]:
    """An output's manifest from its column: an object with its sha256, as written."""
    value: dict[str, Any] = decode(text, dict, f"the manifest of output `{name}`")
    if not isinstance(value.get("sha256"), str):
        raise Damaged(f"the manifest of output `{name}` has no sha256")
    return value


def run_record(data: dict[str, Any]) -> RunRecord:
    """A run's record from its row (the folder already made a path); Damaged if a value is
    not what was written."""
    for key in ("parameters", "environment"):
        data[key] = decode(data[key], dict, f"the `{key}` column")
    data["trigger"] = (decode(data["trigger"], dict, "the `trigger` column")
                       if data.get("trigger") else None)
    number(data["started"], "the `started` column")
    number(data["ended"], "the `ended` column", optional=True)
    for key in ("runner_pid", "runner_started", "heartbeat"):
        number(data.get(key), f"the `{key}` column", optional=True)
    if not isinstance(data.get("runner_host"), (str, type(None))):
        raise Damaged("the `runner_host` column is not text")
    return RunRecord(**data)


def step_record(step: dict[str, Any], outputs: list[tuple[str, Any]]) -> StepRecord:
    """A step's record from its row and its outputs' (name, manifest) rows."""
    of = f"of step `{step['step']}`"
    for key, kind in (("checks", list), ("files", dict), ("inputs", dict),
                      ("parameters", dict)):
        step[key] = decode(step[key], kind, f"the `{key}` column {of}")
    number(step["started"], f"the `started` column {of}", optional=True)
    number(step["ended"], f"the `ended` column {of}", optional=True)
    return StepRecord(**step, outputs={name: manifest(name, text)
                                       for name, text in outputs})
