"""One run as the whole work of a child process: what a run started from JupyterLab and a
scheduled run share.

The parent (the server, a scheduler) chose the run id and reads the run's record; this
process only runs it and prints one last line: ``run ID succeeded``, the run's error, or
``error: ...`` for a run that could not start. SIGTERM cancels it cleanly, its record
saying ``cancel_reason``: taken before the runner is imported, a SIGTERM that comes while
the run is planned waits for the run's record, which then says cancelled. The exit code is
the CLI's: 0, 1 (failed), 2 (could not start), 130 (interrupted).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import MlopsError
from .options import RunOptions
from .startup import skip_slow_optional_imports
from .stop import stop_on_sigterm

__all__ = ["run_in_child"]


def run_in_child(pipeline: str, parameters: dict[str, Any], options: RunOptions,
                 cancel_reason: str, after: Callable[[str], str | None] | None = None) -> int:
    """Run ``pipeline`` with ``options``; print its last line and return the exit code.

    ``after`` is called with the run id of a run that succeeded, before the last line; the
    line it returns (a check of the run by a layer above this one) is printed."""
    skip_slow_optional_imports()
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    try:
        with stop_on_sigterm(cancel_reason):
            from .runner import run_pipeline

            result = run_pipeline(pipeline, parameters, options=options)
    except MlopsError as err:
        print(f"error: {str(err).splitlines()[0]}", flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("cancelled", flush=True)
        return 130
    if result.status != "succeeded":
        print(result.error or "the run did not finish", flush=True)
        return 1
    note = after(result.run_id) if after is not None else None
    if note:
        print(note, flush=True)
    print(f"run {result.run_id} succeeded", flush=True)
    return 0
