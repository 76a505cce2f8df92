"""Several server processes on one socket: ``serve --workers N``.

The model (and the preparation) is loaded once, then ``N`` processes are forked: each
accepts on the same listening socket, so the kernel spreads connections among them, and each
predicts on a core of its own, which one process cannot do while ``predict`` holds the GIL.
The parent only forwards SIGTERM and SIGINT to them and waits. Each process keeps its own
counters, so ``/metrics`` reports the process that answered.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["run_forked"]


def run_forked(workers: int, child: Callable[[], None]) -> None:
    """Run ``child`` in ``workers`` forked processes; forward SIGTERM/SIGINT; wait for all."""
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # the child: serve, then leave without running the parent's cleanup
            code = 0
            try:
                child()
            except BaseException as err:  # one line, as every error a user sees
                print(f"worker {os.getpid()}: {type(err).__name__}: {err}", file=sys.stderr,
                      flush=True)
                code = 1
            os._exit(code)
        pids.append(pid)

    def forward(signum: int, _frame: Any) -> None:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for pid in pids:
        os.waitpid(pid, 0)
