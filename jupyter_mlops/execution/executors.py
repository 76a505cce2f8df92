"""Where step notebooks execute: executors found by name, as papermill finds its engines.

Built in are ``local`` (kernels on this machine, started ahead in a pool: :mod:`.local`) and
``dask`` (each step on a worker of a Dask cluster: :mod:`.daskexec`). Another package adds
one through the entry-point group ``jupyter_mlops.executors`` (``NAME = "module:Class"``).
The runner names an executor and never imports a backend itself; a backend's module is
imported only when it is chosen, so a missing extra costs nothing until then.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError
from .stepexec import KernelCommand, Module, StepCall

ENTRY_POINT_GROUP = "jupyter_mlops.executors"
BUILTIN = {
    "local": "jupyter_mlops.execution.local:LocalExecutor",
    "dask": "jupyter_mlops.execution.daskexec:DaskExecutor",
}
#: Told of each cell as it starts: (index, number of cells, the cell).
CellListener = Callable[[int, int, Any], None]


@dataclass(frozen=True)
class ExecutorSettings:
    """What an executor is opened with."""

    #: Where a cluster's scheduler listens (``dask``); None for the local executor.
    address: str | None = None
    #: Start kernels ahead of their steps (the local executor's pool).
    kernel_pool: bool = True


@dataclass
class RunPlan:
    """What an executor may prepare for, once a run starts: the kernel every step uses, how
    many steps run at once, and which steps come next and what they import first."""

    kernel: KernelCommand
    parallelism: int
    upcoming: Callable[[], list[str]] = field(default=lambda: [])
    plan: Callable[[str], list[Module]] | None = None
    preload: Callable[[str], list[Module]] | None = None
    #: The run's folder, whose ``logs/`` get each kernel's own output (:mod:`.kernellog`).
    logs: Path | None = None


class ExecutorStopped(RuntimeError):
    """A step asked to run, or waiting for its kernel, after :meth:`Executor.kill`: no kernel
    is started for it any more, so a stopped run ends instead of starting new work."""


class Executor:
    """Runs the step notebooks of one run. The runner calls :meth:`start` once, :meth:`run`
    for each step (from several threads at once), :meth:`skip` for a step it will not run,
    :meth:`kill` on Ctrl-C, and :meth:`close` at the end, whatever happened."""

    name = ""

    @classmethod
    def open(cls, settings: ExecutorSettings) -> Executor:
        """Connect or set up; raise a :class:`~jupyter_mlops.errors.MlopsError` naming
        what is missing before any step runs."""
        raise NotImplementedError

    def parallelism(self) -> int | None:
        """How many steps this executor runs at once when the run does not say; None: as
        many as this machine has cores."""
        return None

    def start(self, plan: RunPlan) -> None:
        """Prepare for the run's steps (the local executor starts kernels ahead)."""

    def run(self, call: StepCall, on_cell: CellListener | None) -> None:
        """Execute one step notebook and wait; raise what papermill raises when it fails."""
        raise NotImplementedError

    def skip(self, step: str) -> None:
        """``step`` will not run here (its result came from the cache)."""

    def kill(self) -> None:
        """Stop every step now (Ctrl-C, a cancel); a step that asks to run later raises
        :class:`ExecutorStopped`."""

    def close(self) -> None:
        """Release what :meth:`open` and :meth:`start` took; a second call does nothing."""


def executor_names() -> list[str]:
    """Every executor that can be named: the built-in ones and those of entry points."""
    return sorted(set(BUILTIN) | {e.name for e in _entry_points()})


def open_executor(name: str, settings: ExecutorSettings) -> Executor:
    """The executor called ``name``, opened with ``settings``."""
    target = BUILTIN.get(name)
    if target is None:
        target = next((e.value for e in _entry_points() if e.name == name), None)
    if target is None:
        raise OptionError(f"unknown executor `{name}`; use one of: "
                          f"{', '.join(executor_names())}", option="executor")
    module, _, attribute = target.partition(":")
    found: type[Executor] = getattr(importlib.import_module(module), attribute)
    return found.open(settings)


def _entry_points() -> list[Any]:
    from importlib.metadata import entry_points

    return list(entry_points(group=ENTRY_POINT_GROUP))


