"""Text and JSON views of a pipeline and of a run, for the CLI and the sidebar."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from ..pipeline.spec import PipelineSpec

if TYPE_CHECKING:
    from ..notebook.analysis import Analysis
    from .results import Listener, RunResult, StepResult


def cell_span(numbers: list[int]) -> str:
    """``cells 3-7``, ``cell 4`` or ``cells 2, 5``: source cells in few words."""
    if not numbers:
        return "-"
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 1:
        return f"cells {numbers[0]}-{numbers[-1]}"
    return ("cell " if len(numbers) == 1 else "cells ") + ", ".join(map(str, numbers))


def describe(spec: PipelineSpec, analysis: Analysis | None = None) -> str:
    """A readable summary of a pipeline: parameters, steps, data flow and problems."""
    lines = [f"Pipeline `{spec.name}` from {spec.source}: {len(spec.steps)} step"
             f"{'s' if len(spec.steps) != 1 else ''}"]
    if spec.parameters:
        lines.append("Parameters:")
        for p in spec.parameters:
            help_text = f"  # {p.help}" if p.help else ""
            lines.append(f"  {p.name}: {p.type} = {p.default!r}{help_text}")
    lines.append("Steps:")
    width = max((len(s.name) for s in spec.steps), default=4)
    for index, step in enumerate(spec.steps, start=1):
        lines.append(f"  {index}. {step.name:<{width}}  {cell_span(step.cells)}")
        if step.inputs:
            lines.append("       inputs:  " + ", ".join(f"{n} (from {p})"
                                                       for n, p in step.inputs.items()))
        if step.outputs:
            lines.append("       outputs: " + ", ".join(
                o.name + ("" if o.role == "value" else f" [{o.role}]") for o in step.outputs))
        if step.parameters:
            lines.append("       params:  " + ", ".join(step.parameters))
        if step.after:
            lines.append("       after:   " + ", ".join(step.after))
    lines += _inference_lines(spec, analysis)
    if analysis is not None and analysis.problems:
        lines.append("Problems:")
        lines += [f"  {p.severity}: {p.message}" for p in analysis.problems]
    return "\n".join(lines)


def _inference_lines(spec: PipelineSpec, analysis: Analysis | None) -> list[str]:
    """What ``serve`` and ``predict`` replay on raw records, or the cells that look like it."""
    plan = spec.inference
    if plan is None:
        suggested = analysis.suggested_prepare if analysis is not None else []
        if not suggested:
            return []
        return [f"Inference: no cell is marked prepare; {cell_span(suggested)} look like "
                "preparation (they turn the loaded frame into the model's input): add "
                "`--prepare` to their %%mlops line, or `%%mlops prepare`, to serve raw records"]
    lines = ["Inference (raw records -> prepare cells -> model), replayed by serve and "
             "predict:",
             f"  raw input: `{plan['input']['variable']}` as step {plan['input']['step']} "
             "makes it",
             f"  prepare:   {cell_span([c['cell'] for c in plan['cells']])} -> "
             f"`{plan['output']}`"]
    if plan.get("fitted"):
        lines.append("  from the run: " + ", ".join(f"{n} (step {s})"
                                                   for n, s in plan["fitted"].items()))
    if plan.get("parameters"):
        lines.append("  parameters: " + ", ".join(plan["parameters"]))
    return lines


def describe_json(spec: PipelineSpec, analysis: Analysis | None = None) -> dict[str, Any]:
    """The JSON the sidebar reads: the spec, each cell's role and step, and problems."""
    cells: list[dict[str, Any]] = []
    if analysis is not None:
        step_of = {c.number: p.name for p in analysis.steps for c in p.cells}
        setup = {c.number for c in analysis.setup}
        for cell in analysis.notebook.cells:
            role = cell.role
            if role is None and cell.number in setup:
                role = "setup"
            cells.append({"number": cell.number, "id": cell.cell_id,
                          "cell_type": cell.cell_type, "role": role,
                          "step": step_of.get(cell.number),
                          "assigns": analysis.assigns.get(cell.number, [])})
    problems = [p.to_dict() for p in analysis.problems] if analysis is not None else []
    suggested = analysis.suggested_prepare if analysis is not None else []
    return {"pipeline": spec.to_dict(), "cells": cells, "problems": problems,
            "suggested_prepare": suggested}


def describe_output(manifest: dict[str, Any]) -> str:
    """``df (DataFrame 1,987 x 11)``, ``accuracy = 0.84``: an output in a few words."""
    name = manifest.get("name", "?")
    if "value" in manifest:
        value = manifest["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else repr(value)
        return f"{name} = {shown}" if len(shown) <= 40 else name
    kind = str(manifest.get("python_type", "")).rsplit(".", 1)[-1]
    if "rows" in manifest and "columns" in manifest:
        columns = manifest["columns"]
        count = len(columns) if isinstance(columns, list) else columns
        return f"{name} ({kind} {manifest['rows']:,} x {count})"
    if "shape" in manifest:
        return f"{name} ({kind} {'x'.join(map(str, manifest['shape']))})"
    return f"{name} ({kind})" if kind else name


def progress_printer(spec: PipelineSpec) -> Listener:
    """A listener that prints one line as each step starts and ends."""
    total = len(spec.steps)
    index = {s.name: i for i, s in enumerate(spec.steps, start=1)}
    lock = threading.Lock()

    shown: dict[str, float] = {}

    def listen(event: str, run: RunResult, step: StepResult) -> None:
        if event == "finished":
            return
        if event == "cell":
            # a long step says where it is, every 10 s at most
            now = time.monotonic()
            if now - shown.get(step.name, now - 10) < 10 or step.started is None or \
                    time.time() - step.started < 5:
                return
            shown[step.name] = now
            with lock:
                print(f"[{index[step.name]}/{total}] {step.name}: {step.where()}, "
                      f"{time.time() - step.started:.0f} s", file=sys.stderr, flush=True)
            return
        where = f"[{index[step.name]}/{total}] {step.name}"
        if event == "started":
            text = f"{where}: running"
        elif event == "done":
            text = f"{where}: done in {step.duration or 0:.1f} s"
        elif event == "cached":
            text = f"{where}: unchanged, outputs reused from run {step.cached_from}"
        elif event == "failed":
            text = f"{where}: FAILED after {step.duration or 0:.1f} s"
        else:
            text = f"{where}: {event}"
        with lock:
            print(text, file=sys.stderr, flush=True)

    return listen


def summary(result: RunResult) -> str:
    """The table printed at the end of a run."""
    seconds = (result.ended or result.started) - result.started
    lines = [f"Run {result.run_id} {result.status} in {seconds:.1f} s ({result.folder})"]
    width = max((len(s.name) for s in result.steps), default=4)
    for step in result.steps:
        duration = f"{step.duration:.1f} s" if step.duration is not None else "-"
        outputs = ", ".join(describe_output(m) for m in step.outputs.values())
        if step.status == "failed" and step.error and step.error != result.error:
            # the run's own error (its first failure) is said below it; another is said here
            outputs = step.error.strip().splitlines()[0][:300]
        status = "cached" if step.cached_from else step.status
        lines.append(f"  {step.name:<{width}}  {status:<7}  {duration:>7}  {outputs}")
    notes = [note for step in result.steps for note in check_notes(step)]
    if notes:
        lines.append("Checks:")
        lines += [f"  {note}" for note in notes]
    return "\n".join(lines)


def check_warnings(checks: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(one line per check that did not simply pass, the number that did). A drift check
    that passed with some columns drifted is a warning too."""
    notes, passed = [], 0
    for check in checks:
        if not isinstance(check, dict):
            continue
        drifted = list(check.get("drifted") or []) if check.get("check") == "drift" else []
        if check.get("ok") and not drifted:
            passed += 1
            continue
        if check.get("check") == "drift":
            # a few drifted columns pass the dataset's share but are still worth a line
            of = f"{len(drifted)} of {len(check.get('columns') or {})} columns"
            notes.append(f"warning: `{check.get('variable')}` drifted in {of} "
                         f"({', '.join(map(str, drifted))})"
                         + (", under the share that counts as dataset drift"
                            if check.get("ok") else ""))
        elif check.get("check") == "schema":
            notes.append(f"`{check.get('variable')}` "
                         + "; ".join(map(str, check.get("problems") or [])))
        elif check.get("check") == "metric":
            notes.append(f"metric `{check.get('name')}` = {check.get('value', float('nan')):.4g}"
                         " is beyond its threshold")
    return notes, passed


def check_notes(step: StepResult) -> list[str]:
    """One line per check of a step that did not simply pass, plus a count of those that
    did, each starting with the step's name."""
    notes, passed = check_warnings(step.checks)
    lines = [f"{step.name}: {note}" for note in notes]
    if passed:
        lines.append(f"{step.name}: {passed} check(s) passed")
    return lines
