"""Turning a failed step into one line a user can act on, and marking timeouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..pipeline.spec import Step
from ..runtime._files import atomic_write

_GENERATED = {
    "mlops-inputs": "while loading its inputs",
    "mlops-outputs": "while saving its outputs",
    "mlops-replay": "in the imports and definitions replayed from earlier steps",
    "mlops-parameters": "in its parameters cell",
    "mlops-runtime": "while checking the jupyter-mlops runtime in its kernel",
}


def _first_line(text: str, limit: int = 300) -> str:
    line = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failed_cell(output: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The first cell of the executed notebook with an error output, and that output."""
    try:
        nb = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            if out.get("output_type") == "error":
                return cell, out
        if (cell.get("metadata", {}).get("papermill") or {}).get("exception"):
            # failed without an error output (an IPython UsageError): its stderr says why
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) or []
                           if o.get("name") == "stderr")
            ename, _, evalue = _first_line(text).partition(": ")
            return cell, {"ename": ename or "error", "evalue": evalue}
    return None, None


def _where(cell: dict[str, Any] | None, source: str) -> tuple[str, int | None]:
    if cell is None:
        return "", None
    meta = cell.get("metadata", {})
    origin = (meta.get("mlops") or {}).get("source_cell")
    cell_id = str(cell.get("id", ""))
    if cell_id.startswith("mlops-setup"):
        return f" in setup cell {origin} of {Path(source).name}", origin
    if origin is not None:
        return f" at cell {origin} of {Path(source).name}", origin
    return f" {_GENERATED.get(cell_id, 'in a generated cell')}", None


def describe_failure(err: BaseException, step: Step, output: Path,
                     cell_timeout: float | None, source: str,
                     kernel_log: Path | None = None) -> tuple[str, int | None]:
    """(the one-line message, the source cell number or None) for a step that failed.

    When no cell says why (the kernel died, or did not start or answer), the last line of
    the kernel's own output (``kernel_log``, :mod:`..execution.kernellog`) is quoted: the
    one place a kernel's stderr reaches the user.
    """
    from ..execution.kernellog import last_words

    cell, error_output = _failed_cell(output)
    where, origin = _where(cell, source)
    ename = getattr(err, "ename", None) or (error_output or {}).get("ename")
    evalue = getattr(err, "evalue", None) or (error_output or {}).get("evalue", "")
    name = type(err).__name__
    if cell_timeout is not None and (ename == "KeyboardInterrupt" or name == "CellTimeoutError"):
        reason = (f"the cell ran longer than its time limit of {cell_timeout:g} s and was "
                  "interrupted; make it faster or raise the cell timeout")
    elif name == "DeadKernelError":
        reason = "the kernel died (out of memory, or a crash in compiled code)"
    elif ename:
        # our own errors are written to be read whole; a user's may be pages long
        limit = 1000 if ename in ("ArtifactError", "MlopsError") else 300
        reason = f"{ename}: {_first_line(evalue, limit)}" if evalue else ename
    else:
        reason = f"{name}: {_first_line(str(err))}"
    words = last_words(kernel_log) if name == "DeadKernelError" or not ename else ""
    if words:
        reason += f"; the kernel's last output: {words} (all of it in {kernel_log})"
    return f"step `{step.name}` failed{where}: {reason} (see {output})", origin


def mark_timeout(output: Path, cell_timeout: float) -> None:
    """Say in the executed notebook that its failing cell hit the timeout.

    With ``interrupt_on_timeout`` the kernel is interrupted and papermill marks the cell as
    failed with a KeyboardInterrupt; the note added here tells a reader why.
    """
    try:
        nb = json.loads(output.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs", []) or []
        if any(o.get("output_type") == "error" and o.get("ename") == "KeyboardInterrupt"
               for o in outputs):
            outputs.append({
                "output_type": "stream", "name": "stderr",
                "text": f"jupyter-mlops: this cell ran longer than its time limit (cell "
                        f"timeout) of {cell_timeout:g} s and was interrupted.\n",
            })
            meta = cell.setdefault("metadata", {}).setdefault("papermill", {})
            meta["status"] = "failed"
            meta["exception"] = True
            atomic_write(output, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            return
