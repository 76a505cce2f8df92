"""Running one step notebook: the papermill call every executor shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def execute_step(notebook: str, output: str, parameters: dict[str, Any], kernel: str,
                 cell_timeout: float | None, workdir: str, extra_arguments: list[str],
                 on_cell: Callable[[int, int, Any], None] | None = None) -> None:
    """Run ``notebook`` into ``output`` with papermill's mlops engine, the kernel working in
    ``workdir``; a timed-out cell is interrupted so papermill marks it. Raises what papermill
    raises."""
    import papermill

    papermill.execute_notebook(
        notebook, output, parameters=parameters, kernel_name=kernel, progress_bar=False,
        engine_name="mlops", on_cell=on_cell, execution_timeout=cell_timeout,
        interrupt_on_timeout=True, resources={"metadata": {"path": workdir}},
        extra_arguments=extra_arguments)
