"""One zygote's imports shared by a run's Dask workers on one machine (:mod:`.daskexec`).

Each worker's kernel pool starts a zygote of its own. On a machine running several workers,
those zygotes would all import pandas and scikit-learn at the same time, on the same cores,
while the first step's kernel waits for its zygote's imports: on churn's two workers on two
cores, that kernel waited 1.9 s for imports that take 1.2 s alone, and the other worker's
zygote took 3 s for its own. So the worker the first step is sent to *leads*: once its
zygote forked that step's kernel, and its successor (if it spawns one) imported what the
later steps need, that zygote is kept at a socket named after the run and the kernel, as
:mod:`.keeper` keeps one between runs. The run's other workers on the machine *follow*: each
waits for that socket and forks its zygote from the keeper there (:func:`.warm.attach`),
then imports only what it lacks. Only the imports are shared: every worker's kernels are its
own, as before.

The files, in the user's own keepers' folder (:func:`.warm.folder`):

- ``r-RUN.lead``: made and locked by the leader as its warm-up arrives, unlocked once its
  zygote is kept or cannot be; it holds KERNEL once the leader knows it, which names the
  interpreter, folder, environment and limits as a warm keeper's name does (a zygote's
  imports are only another's where all of those are the same);
- ``r-RUN-KERNEL.sock``: the keeper's socket; ``r-RUN-KERNEL.log``: what the keeper did.

A follower attaches once the socket of its own kernel is there, and starts its own zygote
when the lead file names another kernel (the leader's imports are not its own), when it is
unlocked without the socket (the leader is gone, or could not offer), when there is none
within :data:`GRACE` (no leader on this machine), or once one of its steps has waited
:data:`HURRY` for a kernel (the first step may have gone to another worker); it logs which.
Where an earlier run kept a zygote warm, every worker forks from that one instead. The
leader removes the files at the run's end (a follower does, of a leader that is gone); the
keeper ends by itself once the lead file is gone, so one the leader never learned of (a stop
that killed its zygote between the keeper's fork and the reply) does not wait out
:data:`IDLE`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import warm

__all__ = ["GRACE", "WAIT", "Share"]

#: How long a follower waits for a lead file of its run to appear (seconds): the leader
#: makes one as its warm-up begins, sent at the same time as the follower's.
GRACE = 1.0
#: How long a follower waits for the leader's zygote at most (seconds), then imports alone.
WAIT = 60.0
#: How long the kept zygote waits for a follower to attach (seconds): they attach within
#: the first step's time; the leader stops it at the run's end anyway.
IDLE = 120.0
#: How long a follower goes on waiting once one of its steps waits for a kernel (seconds):
#: the leader may never fork (its first step went to another worker), and a step must not
#: wait :data:`WAIT` for it.
HURRY = 2.0
#: How often a follower looks for the socket (seconds).
TICK = 0.01

_LOG = logging.getLogger("jupyter_mlops.kernels")


class Share:
    """A worker's part in sharing one zygote's imports with the run's other workers on
    this machine: ``lead`` (offer its zygote; the run's lead file is claimed at once) or
    follow (attach to the leader's)."""

    def __init__(self, token: str, lead: bool) -> None:
        self.token = hashlib.sha256(token.encode()).hexdigest()[:12]
        self.lead = lead
        #: The socket's path, once the kernel is known (:meth:`name`, :meth:`find`).
        self.path: Path | None = None
        self._fd: int | None = None  # the leader's lock on its lead file
        self._keeper: tuple[int, float | None] | None = None  # its pid and start time
        self._closed = self._offering = False
        self._until = float("inf")  # when a follower stops waiting (:meth:`hurry`)
        self._lock = threading.Lock()
        where = warm.folder()
        self._lead = None if where is None else where / f"r-{self.token}.lead"
        if lead:
            self._claim()

    def before_zygote(self, spec: Any, workdir: str, closed: Callable[[], bool]
                      ) -> Path | None:
        """Before a pool's zygote starts for kernels of ``spec`` in ``workdir``: as the
        leader, say which kernel it leads for; as a follower, wait for the leader's zygote:
        its socket, or None to import alone (also once ``closed()``). Where an earlier run
        kept a zygote warm (:mod:`.warm`), the leader's comes from it and it lets the
        followers go at once (:meth:`started`): theirs then come from it too."""
        from .zygote import interpreter_of, kernel_env, not_forkable

        if not_forkable(spec):
            self.release()
            return None
        kernel = (interpreter_of(spec), workdir, kernel_env(spec))
        if self.lead:
            self.name(*kernel)
            return None
        return self.find(*kernel, closed)

    def started(self, zygote: Any) -> None:
        """As the leader, once its zygote started: one forked from a zygote an earlier run
        kept warm is nothing to share (every worker's comes from that one), so the followers
        may look at once."""
        if self.lead and getattr(zygote, "source", "") == "warm":
            self.release()

    def after_first_fork(self, zygote: Any) -> None:
        """As the leader, once its zygote forked the first kernel: offer it to the run's
        other workers here (:meth:`offer`, in a thread: it waits for the successor's
        imports); once only."""
        if not self.lead or self._offering:
            return
        self._offering = True

        def offer() -> None:
            try:
                self.offer(zygote)
            except Exception:  # the followers then import on their own
                _LOG.debug("offering the zygote to the run's other workers failed",
                           exc_info=True)

        threading.Thread(target=offer, daemon=True, name="mlops-share").start()

    def _claim(self) -> None:
        """Lock the run's lead file, made under another name and renamed once locked: a
        follower never sees it unlocked while the leader leads."""
        if self._lead is None:
            return
        made = self._lead.with_name(f"{self._lead.name}.{os.getpid()}")
        try:
            fd = os.open(made, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(made, self._lead)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                made.unlink()
            return
        self._fd = fd

    def _socket(self, interpreter: list[str], workdir: str, env: dict[str, str]
                ) -> tuple[Path, str] | None:
        """This run's socket for kernels of ``interpreter`` in ``workdir`` with ``env``, and
        the kernel's part of its name."""
        if self._lead is None:
            return None
        kernel = warm.key_of(interpreter, workdir, env)[:16]
        path = self._lead.with_name(f"r-{self.token}-{kernel}.sock")
        return (path, kernel) if warm.fits(path) else None

    def name(self, interpreter: list[str], workdir: str, env: dict[str, str]) -> None:
        """As the leader, before its zygote starts: write which kernel it leads for in the
        lead file (a follower of another kernel or environment then imports alone)."""
        found = None if self._fd is None else self._socket(interpreter, workdir, env)
        if found is None or self.path is not None:
            if found is None:
                self.release()
            return
        self.path, kernel = found
        try:
            os.write(self._fd, kernel.encode())
        except OSError:
            self.release()

    def offer(self, zygote: Any) -> None:
        """As the leader, once its zygote forked the first kernel: keep the zygote that
        imported the most (its successor, once it imported) at the run's socket for the
        followers, then let them look. Returns once the socket is there or cannot be."""
        try:
            if self._fd is None or self.path is None:  # no kernel named: a zygote made first
                return
            # kept while the run's lead file is there: a stop that kills the zygote before
            # it replies leaves a keeper this leader never learns of, which then ends itself
            pid = zygote.offer(self.path, IDLE, self._lead)
            if pid is not None:
                from .zygote import birth

                self._keeper = (pid, birth(pid))
                if self._closed:  # the run ended while the successor imported
                    self._remove(self._stop_keeper())
                    return
                deadline = time.monotonic() + 10.0
                while (not self.path.exists() and time.monotonic() < deadline
                       and birth(pid) is not None):
                    time.sleep(TICK)
        finally:
            self.release()

    def find(self, interpreter: list[str], workdir: str, env: dict[str, str],
             closed: Callable[[], bool]) -> Path | None:
        """As a follower, before its zygote starts: the socket of the leader's zygote, once
        it is there; None when this worker is to import on its own (no leader here, one of
        another kernel, the leader could not offer, or ``closed()``)."""
        found = self._socket(interpreter, workdir, env)
        if found is None or self._lead is None:
            return None
        path, kernel = found
        start = time.monotonic()
        while True:
            if path.exists():
                return path
            if closed():
                return _alone("the run ended")
            if time.monotonic() > self._until:
                return _alone(f"a step waited {HURRY:g} s for its kernel")
            if time.monotonic() - start > WAIT:
                return _alone(f"no zygote was offered within {WAIT:g} s")
            try:
                named = self._lead.read_text()
            except OSError:  # no leader yet (or the run ended)
                if time.monotonic() - start > GRACE:
                    return _alone("no worker of the run leads on this machine")
            else:
                if named and named != kernel:
                    return _alone("the leader's kernel, environment or limits differ")
                if not _locked(self._lead):
                    return path if path.exists() else _alone(
                        "the leader is gone or could not offer its zygote")
            time.sleep(TICK)

    def hurry(self) -> None:
        """A step waits for a kernel: as a follower, wait :data:`HURRY` seconds more at most
        for the leader's zygote, then import alone."""
        self._until = min(self._until, time.monotonic() + HURRY)

    def release(self) -> None:
        """As the leader: let the followers look (they attach if the socket is there, else
        import on their own)."""
        with self._lock:  # the offer's thread and the pool's close may both let go
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """At the run's end (or stop): as the leader, stop the kept zygote and remove the
        run's files (followers have their own zygotes by now, or none)."""
        self._closed = True
        self.release()
        if not self.lead:
            self._tidy()
            return
        if self._lead is not None:
            with contextlib.suppress(OSError):
                self._lead.unlink()
        if self.path is not None:
            self._remove(self._stop_keeper())

    def _tidy(self) -> None:
        """As a follower, at the run's end: remove the run's lead file and keeper logs when
        the leader is gone without removing them (its lead unlocked, no socket of the run's:
        its worker was killed), rather than leave them to a later keeper's prune a day on."""
        if self._lead is None or not self._lead.exists() or _locked(self._lead):
            return
        if any(self._lead.parent.glob(f"r-{self.token}-*.sock")):
            return  # a keeper of the run still listens: its leader removes it all
        for path in [self._lead, *self._lead.parent.glob(f"r-{self.token}-*.log")]:
            with contextlib.suppress(OSError):
                path.unlink()

    def _remove(self, asked: bool) -> None:
        """Remove the kept zygote's files: its log, and unless it was asked to stop (then it
        removes them itself as it ends), its socket and the socket's lock file."""
        if self.path is None:
            return
        left = [".log"] if asked else [".sock", ".sock.lock", ".log"]
        if not asked and self._keeper is not None:  # killed while binding its socket
            left.append(f".sock.{self._keeper[0]}")
        for suffix in left:
            with contextlib.suppress(OSError):
                Path(f"{self.path.with_suffix('')}{suffix}").unlink()

    def _stop_keeper(self) -> bool:
        """Stop the kept zygote: asked at its socket (True), else (not listening yet)
        killed."""
        if self.path is None:
            return False
        if warm.stop(self.path) is not None:
            return True
        if self._keeper is not None:
            from .zygote import birth

            pid, born = self._keeper
            if born is not None and birth(pid) == born:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        return False


def _alone(why: str) -> None:
    """Say why this worker imports on its own (in the worker's log, at debug level)."""
    _LOG.debug("a worker of the run imports on its own: %s", why)


def _locked(path: Path) -> bool:
    """Whether someone holds the lock on ``path``."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
