"""Micro-batching: requests that arrive together are predicted in one call of the model.

A scikit-learn ``predict`` costs a fixed overhead per call (a random forest walks every tree
for the whole batch at once) plus a little per row, so fifty one-record requests predicted
one by one cost fifty overheads. The server puts each request's checked frame in a short
queue; the first request of a batch waits :attr:`Batcher.window` seconds (2 ms by default)
for others, then the batch is predicted in one call and each request gets its own rows back.
A batch never mixes models (a promotion may swap the model between two requests), and if a
batch fails as a whole (one request's category an encoder refuses), each request is
predicted alone, so the error reaches only the request that caused it.

Everything runs on the server's event loop: the wait is an ``asyncio`` timer, the
prediction a plain call, as before batching.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Batcher"]


class Batcher:
    """Collects frames for ``window`` seconds (or ``max_rows`` rows), predicts them at once."""

    def __init__(self, window: float = 0.002, max_rows: int = 4096) -> None:
        self.window = window
        self.max_rows = max_rows
        self.pending: list[tuple[Any, Any, asyncio.Future[Any]]] = []
        self.rows = 0
        self.timer: asyncio.TimerHandle | None = None
        #: Calls of the model and requests served, for /metrics and the benchmark.
        self.calls = 0
        self.requests = 0

    async def predict(self, model: Any, frame: Any) -> Any:
        """The model's predictions of ``frame``, predicted with whatever else is waiting."""
        if self.window <= 0:
            self.calls += 1
            self.requests += 1
            return model.predict(frame)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((model, frame, future))
        self.rows += len(frame)
        if self.rows >= self.max_rows:
            self.flush()
        elif self.timer is None:
            self.timer = loop.call_later(self.window, self.flush)
        return await future

    def flush(self) -> None:
        """Predict every waiting frame, one call per model."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending, self.rows = self.pending, [], 0
        models: dict[int, list[tuple[Any, Any, asyncio.Future[Any]]]] = {}
        for entry in batch:
            models.setdefault(id(entry[0]), []).append(entry)
        for entries in models.values():
            self._predict(entries)

    def _predict(self, entries: list[tuple[Any, Any, asyncio.Future[Any]]]) -> None:
        import numpy as np
        import pandas as pd

        model = entries[0][0]
        self.requests += len(entries)
        if len(entries) > 1:
            try:
                self.calls += 1
                combined = pd.concat([frame for _, frame, _ in entries], ignore_index=True)
                predictions = np.asarray(model.predict(combined))
            except Exception:  # each request alone below: its error reaches only it
                pass
            else:
                start = 0
                for _, frame, future in entries:
                    if not future.done():
                        future.set_result(predictions[start:start + len(frame)])
                    start += len(frame)
                return
        for _, frame, future in entries:
            self.calls += 1
            try:
                result = np.asarray(model.predict(frame))
            except Exception as err:  # the request's own error, raised in its handler
                if not future.done():
                    future.set_exception(err)
            else:
                if not future.done():
                    future.set_result(result)
