"""The inference pipeline: the cells marked ``prepare``, replayed on new records.

Training/serving skew is born when every client re-implements the notebook's preparation
(``fillna``, derived columns). The author marks the cells that prepare data the same way
for training and for prediction (``%%mlops prepare``, ``--prepare`` on a step or data
line, or the tag ``mlops:prepare``); from the names each cell reads and binds this module
finds, without running anything:

- the **input**: the frame the first prepare cell reads that an earlier step made (churn's
  ``df`` from ``load``); new records arrive shaped like it;
- what else the cells read: **parameters** (the served run's values), setup code (replayed),
  and **fitted** values an earlier step made (a list of feature names, an encoder), loaded
  from the served run's artifacts, never refitted;
- the **output**: the frame the model's input columns are taken from.

A prepare cell may not read the split or anything made at or after it, the target (a
record to score has none), or a model; it may not use IPython syntax, since records are
prepared without a kernel. Each refusal names the cell and the name.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..errors import Problem
from .names import CellNames
from .reader import Cell

__all__ = ["InferencePlan", "plan_inference", "TARGET_NAMES"]

#: Parameter names taken for the target column's name, and variables taken for labels: a
#: prepare cell reading one of them is refused (a record to score has no target).
TARGET_NAMES = frozenset({"target", "label", "target_col", "target_column", "label_col",
                          "label_column", "y_col", "y", "labels"})
_CODE_KINDS = frozenset({"import", "def", "class"})


@dataclass
class InferencePlan:
    """What ``serve`` and ``predict`` replay on new records, as ``pipeline.yaml`` holds it."""

    #: The frame new records stand for, and the step whose output it is.
    input: str
    input_step: str
    #: The frame the model's input columns are taken from after the cells ran.
    output: str
    #: The prepare cells (1-based numbers) with their code, in order.
    cells: list[dict[str, Any]] = field(default_factory=list)
    #: Setup cells' code, replayed first (imports, helper functions).
    setup: list[dict[str, Any]] = field(default_factory=list)
    #: Imports and functions other steps made that the cells use, by name.
    replay: dict[str, str] = field(default_factory=dict)
    #: Values an earlier step made that the cells read, by name: the step.
    fitted: dict[str, str] = field(default_factory=dict)
    parameters: list[str] = field(default_factory=list)
    #: Texts in the cells' code: the input columns the preparation may need.
    columns: list[str] = field(default_factory=list)

    @property
    def code_sha256(self) -> str:
        """One hash of all the code replayed: a run records it, serving compares."""
        digest = hashlib.sha256()
        for part in ([c["code"] for c in self.setup] + sorted(self.replay.values())
                     + [c["code"] for c in self.cells]):
            digest.update(part.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``pipeline.yaml``'s ``inference:`` holds it."""
        return {"input": {"step": self.input_step, "variable": self.input},
                "output": self.output, "cells": self.cells, "setup": self.setup,
                "replay": self.replay, "fitted": self.fitted, "parameters": self.parameters,
                "columns": self.columns, "code_sha256": self.code_sha256}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferencePlan:
        """The plan ``to_dict`` wrote."""
        return cls(input=data["input"]["variable"], input_step=data["input"]["step"],
                   output=data["output"], cells=list(data["cells"]),
                   setup=list(data.get("setup") or []), replay=dict(data.get("replay") or {}),
                   fitted=dict(data.get("fitted") or {}),
                   parameters=list(data.get("parameters") or []),
                   columns=list(data.get("columns") or []))


def _calls_split(python: str) -> bool:
    """Whether the code calls something named like a split (train_test_split, KFold.split)."""
    try:
        tree = ast.parse(python)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the analysis says why
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if "split" in name.lower() or "fold" in name.lower():
                return True
    return False


def _texts(python: str) -> list[str]:
    try:
        tree = ast.parse(python)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the analysis says why
        return []
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value
            and len(n.value) <= 200 and "\n" not in n.value]


class _Planner:
    """Walks the prepare cells in order, classifying every name they read."""

    def __init__(self, where: str, cells: list[Cell], step_of: dict[int, str],
                 names: dict[int, CellNames], parameters: set[str]) -> None:
        self.where, self.step_of, self.names = where, step_of, names
        self.parameters = parameters
        self.problems: list[Problem] = []
        # who bound each name last before a given cell: the cells in notebook order
        self.ordered = sorted(cells, key=lambda c: c.index)
        split = next((c for c in self.ordered if c.index in step_of
                      and _calls_split(c.python)), None)
        self.split_cell = split.number if split else None
        self.models = {c.index for c in self.ordered if c.role == "model"}

    def refuse(self, cell: Cell, message: str, variable: str | None = None) -> None:
        self.problems.append(Problem(f"{self.where}, cell {cell.number} (prepare){message}",
                                     cell.number, "error", variable))

    def binder(self, name: str, before: Cell) -> Cell | None:
        """The last cell before ``before`` that binds or changes ``name``."""
        found = None
        for cell in self.ordered:
            if cell.index >= before.index:
                break
            names = self.names.get(cell.index)
            if names and (name in names.defines or name in names.mutates):
                found = cell
        return found

    def check_cell(self, cell: Cell) -> None:
        if "get_ipython()" in cell.python:
            self.refuse(cell, " uses IPython syntax (a magic or `!command`); new records are "
                              "prepared without a kernel, so write it as plain Python")
        if _calls_split(cell.python):
            self.refuse(cell, " splits the data; a record to score is not split: keep the "
                              "split out of the prepare cells")

    def source(self, cell: Cell, name: str) -> tuple[str, Cell] | None:
        """Where a name a prepare cell reads comes from: (kind, cell) or None if refused."""
        if name in TARGET_NAMES:
            self.refuse(cell, f" reads `{name}`, the target; a record to score has no target, "
                              "so keep that code out of the prepare cells", name)
            return None
        binder = self.binder(name, cell)
        if binder is None:
            return None  # the analysis says what is undefined
        if binder.index in self.models:
            self.refuse(cell, f" reads the model `{name}` (cell {binder.number}); preparation "
                              "comes before the model", name)
            return None
        if self.split_cell is not None and binder.number >= self.split_cell:
            self.refuse(cell, f" reads `{name}`, made at or after the split in cell "
                              f"{self.split_cell}; preparing a record may not depend on the "
                              "split", name)
            return None
        if binder.index not in self.step_of:
            return "setup", binder
        if not binder.prepare and self.step_of.get(binder.index) == self.step_of[cell.index]:
            self.refuse(cell, f" reads `{name}`, which cell {binder.number} of the same step "
                              "makes without preparing; mark that cell prepare too, or move it "
                              "to an earlier step", name)
            return None
        return ("prepared" if binder.prepare else "step"), binder


def plan_inference(where: str, setup: list[Cell], steps: dict[str, list[Cell]],
                   names: dict[int, CellNames], parameters: set[str]
                   ) -> tuple[InferencePlan | None, list[Problem]]:
    """The inference plan of a notebook whose cells ``steps`` holds by step name (None when
    no cell prepares), and the problems that keep it from being one."""
    step_of = {c.index: step for step, cells in steps.items() for c in cells}
    prepare = sorted((c for cells in steps.values() for c in cells if c.prepare),
                     key=lambda c: c.index)
    if not prepare:
        return None, []
    planner = _Planner(where, setup + [c for cells in steps.values() for c in cells], step_of,
                       names, parameters)
    found: dict[str, Any] = {"input": None, "fitted": {}, "replay": {}, "parameters": []}
    for cell in prepare:
        planner.check_cell(cell)
        cell_names = names.get(cell.index) or CellNames()
        for name in dict.fromkeys(cell_names.uses + cell_names.late_uses):
            _classify(planner, cell, name, found)
    if found["input"] is None:
        first = prepare[0]
        planner.refuse(first, " reads no frame an earlier step made; the first prepare cell "
                              "must start from the data a step loaded (e.g. `df`)")
        return None, planner.problems
    if planner.problems:
        return None, planner.problems
    input_name, input_step = found["input"]
    last = names.get(prepare[-1].index) or CellNames()
    data = [n for n, kind in last.defines.items() if kind not in _CODE_KINDS]
    output = input_name if (input_name in last.defines or input_name in last.mutates
                            or not data) else data[-1]
    plan = InferencePlan(
        input=input_name, input_step=input_step, output=output,
        cells=[{"cell": c.number, "step": step_of[c.index], "code": c.python} for c in prepare],
        setup=[{"cell": c.number, "code": c.python} for c in setup],
        replay=found["replay"], fitted=found["fitted"],
        parameters=list(dict.fromkeys(found["parameters"])),
        columns=list(dict.fromkeys(t for c in prepare for t in _texts(c.python))))
    return plan, []


def _classify(planner: _Planner, cell: Cell, name: str, found: dict[str, Any]) -> None:
    from .analysis import KERNEL_NAMES

    if name in KERNEL_NAMES:
        return
    if name in planner.parameters and planner.binder(name, cell) is None:
        if name in TARGET_NAMES:
            planner.source(cell, name)  # refused, naming it
        else:
            found["parameters"].append(name)
        return
    origin = planner.source(cell, name)
    if origin is None:
        return
    kind, binder = origin
    bound = (planner.names.get(binder.index) or CellNames()).defines.get(name, "data")
    if kind in ("setup", "prepared"):
        return
    if bound in _CODE_KINDS:
        code = (planner.names.get(binder.index) or CellNames()).code.get(name)
        if code:
            found["replay"][name] = code
    elif found["input"] is None:
        found["input"] = (name, planner.step_of[binder.index])
    elif found["input"][0] != name:
        found["fitted"][name] = planner.step_of[binder.index]


def _reads_file(python: str) -> bool:
    """Whether the code calls a ``read_*`` function (``pd.read_csv``, ``pd.read_parquet``)."""
    try:
        tree = ast.parse(python)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the analysis says why
        return False
    return any(isinstance(n, ast.Call) and isinstance(n.func, (ast.Attribute, ast.Name))
               and (getattr(n.func, "attr", None) or getattr(n.func, "id", "")).startswith(
                   "read_") for n in ast.walk(tree))


def suggest_prepare(steps: dict[str, list[Cell]], names: dict[int, CellNames]) -> list[int]:
    """Cells that look like preparation, when none is marked: after the first cell that
    reads a file into a frame, each cell that reads that frame and binds or changes it again,
    without the target and before any split; their numbers (empty when none fits)."""
    cells = sorted((c for group in steps.values() for c in group), key=lambda c: c.index)
    if any(c.prepare for c in cells):
        return []
    start = next((c for c in cells if _reads_file(c.python)), None)
    if start is None:
        return []
    frames = [n for n, kind in (names.get(start.index) or CellNames()).defines.items()
              if kind not in _CODE_KINDS]
    if not frames:
        return []
    frame, found = frames[-1], []
    for cell in cells:
        if cell.index <= start.index or cell.role == "model":
            continue
        if _calls_split(cell.python):
            break
        cell_names = names.get(cell.index) or CellNames()
        used = set(cell_names.uses)
        if frame in used and (frame in cell_names.defines or frame in cell_names.mutates) \
                and not used & TARGET_NAMES:
            found.append(cell.number)
    return found
