"""The runner's heartbeat: a daemon thread that says, every few seconds, that the runner of a
run is still there, so whoever reads the run can tell a live run from one whose runner was
killed outright (:func:`.liveness.runner_gone`)."""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import MlopsError
from .liveness import HEARTBEAT_INTERVAL
from .store import RunStore

__all__ = ["Heartbeat"]


class Heartbeat:
    """Says every ``interval`` seconds that the runner of ``run_id`` is alive, from a daemon
    thread with a connection of its own (the runner's is busy with its steps): one
    single-row UPDATE per beat. A beat the store refuses is skipped; the next one tries
    again. Stops with :meth:`stop`, or with the process."""

    def __init__(self, path: str | Path, run_id: str,
                 interval: float = HEARTBEAT_INTERVAL) -> None:
        self.path, self.run_id, self.interval = Path(path), run_id, interval
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True,
                                       name=f"mlops-heartbeat-{run_id}")

    def start(self) -> Heartbeat:
        """Start beating; returns ``self``."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """No more beats; waits a moment for one under way (a run's end is not held up by a
        beat waiting for a busy store: that beat, if late, changes only a running run)."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(timeout=2.0)

    def _beat(self) -> None:
        store: RunStore | None = None
        try:
            while not self.stopped.wait(self.interval):
                try:
                    store = store or RunStore(self.path)
                    store.beat(self.run_id)
                except MlopsError:  # a full disk, a locked store: the next beat tries again
                    continue
        finally:
            if store is not None:
                store.close()
