"""Shared helpers: notebooks built in memory, and the CLI run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
# The list of stores with jobs (jupyter_mlops.jobs.registry) is per user: the suite, and the
# servers and schedulers it starts, keep theirs apart from the user's.
os.environ["JUPYTER_MLOPS_SCHEDULES"] = str(
    Path(tempfile.mkdtemp(prefix="mlops-schedules-")) / "schedules.json")
# After each run a process keeps its kernels' imports warm for the next run of that pipeline
# (jupyter_mlops.execution.warm): the suite runs hundreds of pipelines in folders of their
# own, so it keeps each for seconds, not the user's minutes; its own tests set more.
os.environ.setdefault("JUPYTER_MLOPS_KEEP_WARM", "10")
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def build_notebook(*cells: Any) -> nbformat.NotebookNode:
    """A notebook from cells given as source strings (code), ``("md", text)`` for markdown,
    or ``(source, [tags])`` for a code cell with tags."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    for cell in cells:
        if isinstance(cell, tuple) and cell[0] == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[1]))
        elif isinstance(cell, tuple):
            nb.cells.append(nbformat.v4.new_code_cell(cell[0], metadata={"tags": list(cell[1])}))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    return nb


def write_notebook(path: Path, *cells: Any) -> Path:
    """Write ``build_notebook(*cells)`` to ``path`` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(build_notebook(*cells), str(path))
    return path


@dataclass
class Completed:
    """What a CLI process did."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> Completed:
    """Run ``jupyter mlops ARGS`` as its own process, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_mlops.cli", *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return Completed(proc.returncode, proc.stdout, proc.stderr)


def run_capturing(notebook: Path, cwd: Path) -> None:
    """Run ``notebook`` with papermill as its author would, so its magics capture the contract
    into ``<stem>.mlops.json`` beside it."""
    import os

    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook))
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(cwd / "ran.ipynb"),
                    "--cwd", str(cwd), "--no-progress-bar"], check=True, capture_output=True,
                   env=env)


@pytest.fixture
def cli() -> Any:
    """The ``run_cli`` helper as a fixture."""
    return run_cli


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    """Stop the warm zygotes the suite's runs left (they would end within seconds anyway),
    not the user's own (kept longer)."""
    from jupyter_mlops.execution import warm

    for path in warm.kept():
        state = warm.status(path)
        if state is not None and state["idle"] == warm.idle_seconds():
            warm.stop(path)


# jp_fetch and a real jupyter_server for the server extension's tests (test_server.py)
pytest_plugins = ["pytest_jupyter.jupyter_server"]
