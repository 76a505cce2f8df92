"""Where a finished run is mirrored: trackers found by name, as papermill finds its engines.

Built in is ``mlflow`` (:mod:`.mlflowsync`); another package adds one through the
entry-point group ``jupyter_mlops.mirrors`` (``NAME = "module:Class"``). A mirror is opened
before the run starts, so a missing extra or a bad target is said before any step runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import OptionError
from .results import RunResult

ENTRY_POINT_GROUP = "jupyter_mlops.mirrors"
BUILTIN = {"mlflow": "jupyter_mlops.run.mlflowsync:MlflowMirror"}


class Mirror:
    """Copies a finished run (parameters, metrics, model, notebooks) into another tracker."""

    name = ""

    def __init__(self, target: str) -> None:
        #: Where the mirror writes (a tracking URI).
        self.target = target

    @classmethod
    def open(cls, target: str) -> Mirror:
        """Check that the mirror can work (its library is installed); raise a one-line
        :class:`~jupyter_mlops.errors.MlopsError` if not."""
        raise NotImplementedError

    def mirror(self, result: RunResult, packages: dict[str, str]) -> str:
        """Copy ``result``; ``packages`` are the versions the steps imported. Returns the
        id the tracker gave the run."""
        raise NotImplementedError


def mirror_names() -> list[str]:
    """Every mirror that can be named."""
    return sorted(set(BUILTIN) | {e.name for e in _entry_points()})


def open_mirror(name: str, target: str) -> Mirror:
    """The mirror called ``name``, writing to ``target``."""
    found = BUILTIN.get(name) or next((e.value for e in _entry_points() if e.name == name),
                                      None)
    if found is None:
        raise OptionError(f"unknown mirror `{name}`; use one of: {', '.join(mirror_names())}",
                          option="mirrors")
    module, _, attribute = found.partition(":")
    kind: type[Mirror] = getattr(importlib.import_module(module), attribute)
    return kind.open(target)


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))
