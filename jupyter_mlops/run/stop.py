"""A SIGTERM cancels a run cleanly: its kernels stopped, its record finished ``cancelled``.

``kill``, a cancel from JupyterLab, or a process manager stopping the machine all send
SIGTERM; :func:`stop_on_sigterm` notes it, and the run asks (:meth:`Stop.check`) at the
moments it can stop: then :class:`Cancelled` is raised in the main thread. The signal handler
itself raises nothing: an exception thrown into whatever the main thread was doing (taking a
future's lock in ``concurrent.futures.wait``, submitting a step, the first line of a
``finally``) could leave a lock held or a record unwritten, and the run would never end.
:func:`kill_kernels_since` makes sure no kernel the run started outlives it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Cancelled", "Stop", "kill_kernels_since", "stop_on_sigterm"]


class Cancelled(BaseException):  # like KeyboardInterrupt: a stop, not an error
    """A SIGTERM asked the run to stop: raised in the main thread by :meth:`Stop.check`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        #: What stopped it, as the run's record says (``cancelled by SIGTERM``).
        self.reason = reason


class Stop:
    """Remembers the first SIGTERM; :meth:`check` turns it into :class:`Cancelled` once.

    While the run's record is being opened or finished (:meth:`hold`), a check raises
    nothing: the signal waits for :meth:`arm`, once the record exists, or is not raised at
    all once the run has ended (:func:`stop_on_sigterm` then delivers it again)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.received = self.raised = self.held = False

    def handle(self, signum: int, frame: Any) -> None:
        """The SIGTERM handler: only notes the signal (a second one changes nothing)."""
        self.received = True

    def check(self) -> None:
        """Raise :class:`Cancelled` if a SIGTERM came and the run may stop now."""
        if self.received and not self.held and not self.raised:
            self.raised = True
            raise Cancelled(self.reason)

    def hold(self) -> None:
        """Keep a SIGTERM waiting: the run's record is being opened or finished."""
        self.held = True

    def arm(self) -> None:
        """Let a SIGTERM stop the run again, raising one that came while held."""
        self.held = False
        self.check()


_stopping: Stop | None = None  # the stop installed by the outermost stop_on_sigterm


@contextmanager
def stop_on_sigterm(reason: str = "cancelled by SIGTERM") -> Iterator[Stop]:
    """While inside, a SIGTERM cancels the run of this process cleanly (its record says
    ``reason``) at the run's next check. Only the main thread can take a signal, and only a
    process that has not chosen its own SIGTERM handler gets this one; elsewhere, and inside
    an outer ``stop_on_sigterm`` (whose reason stays), this changes nothing. A SIGTERM the
    run did not stop for (it came once the run had ended, or before it could be recorded)
    is delivered again on the way out, so the process still ends as it was asked to."""
    global _stopping
    if _stopping is not None:
        yield _stopping
        return
    stop = Stop(reason)
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield stop  # never receives
        return
    signal.signal(signal.SIGTERM, stop.handle)
    _stopping = stop
    try:
        yield stop
    finally:
        _stopping = None
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if stop.received and not stop.raised:
            signal.raise_signal(signal.SIGTERM)


def kill_kernels_since(began: float) -> None:
    """SIGKILL the process groups of this process's children that started since ``began``
    in sessions of their own: kernels and their zygotes (jupyter_client and the kernel pool
    start each so), which a stopped run must not leave running. Another child of the
    process (a subprocess of the caller's own) keeps its parent's session and is left."""
    import psutil

    for child in psutil.Process().children():
        try:
            # the start time of a process is known to within a second (the boot time's)
            if child.create_time() >= began - 1.0 and os.getpgid(child.pid) == child.pid:
                os.killpg(child.pid, signal.SIGKILL)
        except (psutil.Error, OSError):  # gone meanwhile
            continue
