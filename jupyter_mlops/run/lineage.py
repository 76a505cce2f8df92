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

    def node(name: str, step_name: str | None) -> dict[str, Any]:
        step = _producer(run, name, step_name)
        return {
            "variable": name, "sha256": step.outputs[name]["sha256"],
            "run": run.run_id, "step": step.step, "cached_from": step.cached_from,
            "code_sha256": step.code_sha256, "parameters": step.parameters,
            "files": step.files,
            "inputs": [node(n, i["step"]) for n, i in sorted(step.inputs.items())],
        }

    return node(variable, None)


def lineage_text(tree: dict[str, Any], depth: int = 0) -> str:
    """The lineage tree as indented lines."""
    pad = "  " * depth
    origin = f", computed in run {tree['cached_from']}" if tree["cached_from"] else ""
    lines = [f"{pad}{tree['variable']} (sha256 {tree['sha256'][:12]}) made by step "
             f"`{tree['step']}` of run {tree['run']}{origin}, code sha256 "
             f"{(tree['code_sha256'] or '?')[:12]}"]
    if tree["parameters"]:
        lines.append(f"{pad}  parameters: " + ", ".join(f"{k}={v!r}"
                                                      for k, v in tree["parameters"].items()))
    for path, digest in tree["files"].items():
        lines.append(f"{pad}  read {path} (sha256 {digest[:12]})")
    for child in tree["inputs"]:
        lines.append(lineage_text(child, depth + 1))
    return "\n".join(lines)
