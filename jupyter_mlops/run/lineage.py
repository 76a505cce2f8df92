"""Lineage: which run, step, code, parameters, files and inputs produced a variable."""

from __future__ import annotations

from typing import Any

from ..errors import MlopsError
from .records import RunRecord, StepRecord
from .store import RunStore


def _producer(run: RunRecord, variable: str, step: str | None = None) -> StepRecord:
    steps = [s for s in run.steps if variable in s.outputs and (step is None or s.step == step)]
    if not steps:
        known = sorted({n for s in run.steps for n in s.outputs})
        raise MlopsError(f"run {run.run_id} has no output `{variable}`; its outputs are: "
                         f"{', '.join(known) or 'none'}")
    return steps[-1]


def lineage(store: RunStore, run_id: str, variable: str) -> dict[str, Any]:
    """The tree of what made ``variable`` in run ``run_id``, each input down to the start."""
    run = store.run(run_id)
    made: dict[tuple[str, str | None], dict[str, Any]] = {}  # a step feeding many: once

    def node(name: str, step_name: str | None) -> dict[str, Any]:
        if (name, step_name) not in made:
            made[name, step_name] = build(name, step_name)
        return made[name, step_name]

    def build(name: str, step_name: str | None) -> dict[str, Any]:
        step = _producer(run, name, step_name)
        return {
            "variable": name, "sha256": step.outputs[name]["sha256"],
            "run": run.run_id, "step": step.step, "cached_from": step.cached_from,
            "code_sha256": step.code_sha256, "parameters": step.parameters,
            "files": step.files,
            "inputs": [node(n, i["step"]) for n, i in sorted(step.inputs.items())],
        }

    return node(variable, None)


def lineage_text(tree: dict[str, Any], depth: int = 0, shown: set[str] | None = None) -> str:
    """The lineage tree as indented lines. Each producing step is described once (its
    parameters, the files it read, its inputs); a variable made by a step already described
    is one line that says so, so a step feeding many others does not repeat its chain."""
    shown = set() if shown is None else shown
    pad = "  " * depth
    made = (f"{pad}{tree['variable']} (sha256 {tree['sha256'][:12]}) made by step "
            f"`{tree['step']}`")
    if tree["step"] in shown:
        return made + " (described above)"
    shown.add(tree["step"])
    origin = f", computed in run {tree['cached_from']}" if tree["cached_from"] else ""
    lines = [f"{made} of run {tree['run']}{origin}, code sha256 "
             f"{(tree['code_sha256'] or '?')[:12]}"]
    if tree["parameters"]:
        lines.append(f"{pad}  parameters: " + ", ".join(f"{k}={v!r}"
                                                      for k, v in tree["parameters"].items()))
    for path, digest in tree["files"].items():
        lines.append(f"{pad}  read {path} (sha256 {digest[:12]})")
    for child in tree["inputs"]:
        lines.append(lineage_text(child, depth + 1, shown))
    return "\n".join(lines)
