"""Whether the runner of a run recorded ``running`` is still there.

A runner killed outright (SIGKILL, a power cut) cannot write its end, so a run records who
runs it: the runner's pid, host and process start time, and a heartbeat the runner renews
every :data:`HEARTBEAT_INTERVAL` seconds. Whoever reads the run decides with
:func:`runner_gone`; the store shows such a run as ``interrupted``.
"""

from __future__ import annotations

import socket
import time

from .records import RunRecord

__all__ = ["HEARTBEAT_INTERVAL", "START_TOLERANCE", "STALE_AFTER", "ago", "runner_gone",
           "who"]

#: Seconds between two heartbeats of a running run's runner: one single-row UPDATE each.
HEARTBEAT_INTERVAL = 5.0
#: Seconds without a heartbeat after which a runner on another host is taken for gone: twelve
#: missed beats, and twice the 30 s one beat may wait for a store that another process holds.
#: (A runner on this host is asked directly, by its pid, and is never judged by its beat.)
STALE_AFTER = 60.0
#: Seconds by which two readings of one process's start time may differ: psutil derives it
#: from the boot time, which a change of the clock moves. A process under the recorded pid
#: that started further from the recorded time is another process that reused the pid.
START_TOLERANCE = 1.0


def runner_gone(run: RunRecord, now: float | None = None) -> str | None:
    """Why the runner of ``run``, recorded as running, is gone: one sentence with the figures
    that show it; None while it may still run.

    The rule: a run is interrupted when its status is ``running`` and

    - its runner was on this host, and no process has its pid, or that process is a zombie,
      or it started more than :data:`START_TOLERANCE` s away from the recorded start time
      (the pid was reused); a live runner is never judged by its heartbeat here, so a
      runner stopped by Ctrl-Z, or one whose beats wait for a busy store, stays running;
    - its runner was on another host, whose processes cannot be asked, and its last
      heartbeat is more than :data:`STALE_AFTER` s old (by this host's clock).

    A run recorded without its runner (by a jupyter-mlops older than these columns) cannot
    be judged and stays as recorded; so does a process this user may not inspect.
    """
    if run.status != "running" or run.runner_pid is None or not run.runner_host:
        return None
    now = time.time() if now is None else now
    beat = run.heartbeat if run.heartbeat is not None else run.started
    last = f"last heartbeat {ago(beat, now)}"
    if run.runner_host != socket.gethostname():
        if now - beat <= STALE_AFTER:
            return None
        return (f"{who(run)} sent no heartbeat for {_duration(now - beat)} (a runner on "
                f"another host is taken for gone after {STALE_AFTER:.0f} s)")
    import psutil

    try:
        process = psutil.Process(run.runner_pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return f"{who(run)} has exited ({last})"
        started = process.create_time()
    except psutil.NoSuchProcess:
        return f"{who(run)} is gone ({last})"
    except psutil.Error:  # not ours to inspect: cannot tell, so it may run
        return None
    if run.runner_started is not None and abs(started - run.runner_started) > START_TOLERANCE:
        return (f"{who(run)} is gone: that pid is now another process, started "
                f"{_when(started)}, not {_when(run.runner_started)} as the runner was ({last})")
    return None


def who(run: RunRecord) -> str:
    """``runner pid 1234 on host vm``."""
    return f"runner pid {run.runner_pid} on host {run.runner_host}"


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))


def _duration(seconds: float) -> str:
    """``42 s``, ``3 min``, ``5 h``, ``2 d``: a rough age, for a person."""
    seconds = max(seconds, 0.0)
    for unit, size, up_to in (("s", 1, 120), ("min", 60, 120 * 60), ("h", 3600, 48 * 3600)):
        if seconds < up_to:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds / 86400:.0f} d"


def ago(stamp: float | None, now: float | None = None) -> str:
    """``42 s ago``, or ``never``."""
    if stamp is None:
        return "never"
    return f"{_duration((time.time() if now is None else now) - stamp)} ago"
