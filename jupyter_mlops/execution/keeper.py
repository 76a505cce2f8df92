"""A zygote kept warm between runs: what one run's zygote imported, ready for the next run.

At the end of a run the zygote that imported the most forks a keeper (the ``keep`` request
of :mod:`.zygote_main`). The keeper listens on a Unix socket named after the pipeline's
folder, the kernel's Python and its environment (:mod:`.warm` makes the name), and forks a
zygote for each run that attaches: that run's kernels so find pandas and scikit-learn
imported, as the first run's did, without the seconds of importing them again.

It runs in the kernel's environment, with the standard library only. It ends when nobody
attached for ``idle`` seconds, when a file one of its modules came from (or a folder on
``sys.path``) changed since it was imported (a package installed, upgraded or edited: the
next kernel must see the new code; noted at import by :func:`.zygote_main.note_files`, so
an edit while the run ran is seen too), when its folder is gone, when a newer keeper took its
socket's name, when the file it was kept for is gone (a run's lead file, :mod:`.hostshare`:
that run ended), and on a ``stop`` request. Only the user who started it may connect (the
socket's folder is theirs alone, the socket is 0600, and the peer's uid is checked).

Protocol, one request per connection, JSON, the reply a JSON line:
``{"op": "attach", "log": path or null}`` sent with four file descriptors (a run's request
and reply pipe ends, then a spare channel's, as :func:`.zygote_main.serve` takes them; the
zygote's own output goes to ``log``) ->
``{"pid": int, "imported": [...]}``: a zygote forked from the keeper, in a session of its
own, serves the run on them; or ``{"stale": why}``, and the keeper ends.
``{"op": "stop"}`` -> ``{"stopped": pid}``, and the keeper ends.
``{"op": "status"}`` -> ``{"pid": int, "folder": str, "python": str, "modules": int,
"packages": [str], "idle": seconds, "left": seconds}``: who it is, what it imported when
asked, and how long it still waits without a run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import time
from typing import Any

from .zygote_main import IMPORTED, changed, detached, import_ahead, output_to, serve

__all__ = ["keep"]

#: How often the keeper looks whether its socket's name is still its own (seconds).
TICK = 1.0
#: How long what a keeper that ended left (its log, lock file, a socket nobody listens on)
#: stays before another keeper removes it (seconds): a day.
PRUNE_AGE = 86400.0


def keep(path: str, idle: float, log: str, modules: list[list[Any]] | None = None,
         while_file: str | None = None) -> None:
    """Import those of ``modules`` not imported yet (what the run's other zygote imported),
    then serve ``attach``, ``status`` and ``stop`` requests on the Unix socket ``path`` until
    nobody attached for ``idle`` seconds (or another reason to end), or ``while_file`` is
    gone; write what it does to ``log``."""
    _quiet(log)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    missing = [m for m in modules or [] if m not in IMPORTED]
    refused = import_ahead(missing)["why"] if missing else ""
    stale = changed()
    if refused or stale:  # stale: edited while the run ran, so older than its file
        _say(f"not kept: {refused or f'{stale} since it was imported'}")
        return
    # the run it was kept for may have ended before it could be told of this keeper (its
    # zygote killed between the fork and the reply): nobody would stop it
    if while_file is not None and not os.path.exists(while_file):
        _say(f"not kept: {while_file} is gone (the run it was kept for ended)")
        return
    folder = os.getcwd()
    listener, inode = _listen(path)
    try:
        removed = _prune(os.path.dirname(path), time.time())
        if removed:
            _say(f"removed {len(removed)} files left by keepers that ended over "
                 f"{PRUNE_AGE / 3600:g} h ago: {', '.join(removed[:5])}"
                 f"{' ...' if len(removed) > 5 else ''}")
    except Exception as err:  # tidying must never keep the keeper from serving
        _say(f"removing what ended keepers left failed: {type(err).__name__}: {err}")
    _say(f"keeping {len(sys.modules)} modules ({len(IMPORTED)} asked for) of {folder} warm "
         f"at {path}; ends after {idle:g} s without a run")
    why = f"no run attached for {idle:g} s"
    try:
        last = time.monotonic()
        while time.monotonic() - last < idle:
            ready, _, _ = select.select([listener], [], [], min(TICK, idle))
            _reap()
            if ready:
                left = idle - (time.monotonic() - last)
                ended, attached = _answer(listener, {"folder": folder, "idle": idle,
                                                     "left": left}, (listener,))
                if attached:
                    last = time.monotonic()
                if ended:
                    why = ended
                    break
            if not os.path.isdir(folder):
                why = f"{folder} is gone"
                break
            if while_file is not None and not os.path.exists(while_file):
                why = f"{while_file} is gone (the run it was kept for ended)"
                break
            if _inode(path) != inode:
                why = "a newer keeper took the socket"
                break
    finally:
        with _locked(path):  # not a newer keeper's socket, renamed over ours meanwhile
            if _inode(path) == inode:
                os.unlink(path)
                _unlink_lock(path)  # the log stays: it says why the keeper ended
        _say(f"ended: {why}")


def _quiet(log: str) -> None:
    """Standard input from /dev/null, output to ``log``: a keeper outlives the run, and must
    not hold the pipes of whoever started that run (a test's, a terminal's)."""
    sys.stdout.flush()
    sys.stderr.flush()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.close(null)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.utime(log)  # new: another keeper's pruning (:func:`_prune`) leaves it alone
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _say(text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    os.write(2, f"{stamp} keeper {os.getpid()}: {text}\n".encode())


def _listen(path: str) -> tuple[socket.socket, int]:
    """A listening socket at ``path``, made under another name and renamed over it, so a
    run connecting meanwhile reaches the old keeper or the new one, never nothing."""
    made = f"{path}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(made)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mask = os.umask(0o177)
    try:
        listener.bind(made)
    finally:
        os.umask(mask)
    listener.listen(8)
    with _locked(path):
        os.rename(made, path)
        return listener, os.stat(path).st_ino


@contextlib.contextmanager
def _locked(path: str) -> Any:
    """Hold the lock of socket ``path``: an ending keeper removes the socket only if it is
    still its own, and no newer keeper renames one over it between the look and the removal.
    The lock file may be removed by its holder (:func:`_unlink_lock`): a process that opened
    it before and gets the lock after finds another file, or none, at its name, and locks
    the file now there."""
    lock = f"{path}.lock"
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _inode(lock) == os.fstat(fd).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def _unlink_lock(path: str) -> bool:
    """Remove the lock file of socket ``path``; only while holding it (:func:`_locked`).
    Whether there was one."""
    try:
        os.unlink(f"{path}.lock")
    except FileNotFoundError:
        return False
    return True


def _prune(folder: str, now: float) -> list[str]:
    """Remove what keepers that ended left behind, once nobody wrote it for
    :data:`PRUNE_AGE` seconds: the logs and lock files of keepers whose sockets are gone, the
    sockets of keepers killed (nobody listens), and sockets half made; and the lead files of
    runs whose workers shared a zygote, once nobody holds them. Each pipeline folder
    and environment has a name of its own, and their files would otherwise pile up
    (thousands after a test suite), each run's look for keepers (:func:`.warm.kept`) reading
    past them. A lock file is removed only while held, and only if nobody holds it. The
    names of the files removed."""
    try:
        with os.scandir(folder) as entries:
            # z-: kept between runs; r-: shared by a run's workers (:mod:`.hostshare`)
            found = {entry.name: entry for entry in entries
                     if entry.name.startswith(("z-", "r-"))}
    except OSError:
        return []
    old = {name for name, entry in found.items() if _older(entry, now)}
    gone: set[str] = set()  # sockets removed here
    removed: list[str] = []
    for name in sorted(old):
        if name.endswith(".sock") and not _alive(found[name].path):
            with contextlib.suppress(OSError), _locked(found[name].path):
                if _inode(found[name].path) == found[name].inode():
                    os.unlink(found[name].path)
                    removed.append(name)
                    if _unlink_lock(found[name].path):
                        removed.append(f"{name}.lock")
            gone.add(name)
        elif (".sock." in name and not name.endswith(".lock")) or ".lead." in name:
            with contextlib.suppress(OSError):  # bound (or made) and never renamed
                os.unlink(found[name].path)
                removed.append(name)
        elif name.endswith(".lead"):  # a run's, whose leader is gone (it holds it while it leads)
            with contextlib.suppress(OSError):
                if _unlink_idle_lock(found[name].path):
                    removed.append(name)
    for name in sorted(old):
        socket_name = name[:-len(".log")] + ".sock" if name.endswith(".log") else \
            name[:-len(".lock")] if name.endswith(".sock.lock") else None
        if socket_name is None or (socket_name in found and socket_name not in gone):
            continue
        with contextlib.suppress(OSError):
            if name.endswith(".log"):
                # looked at again: a keeper of that name may have just started writing it
                if now - os.stat(found[name].path).st_mtime >= PRUNE_AGE:
                    os.unlink(found[name].path)
                    removed.append(name)
            elif _unlink_idle_lock(found[name].path):
                removed.append(name)
    return removed


def _older(entry: os.DirEntry[str], now: float) -> bool:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime >= PRUNE_AGE
    except OSError:
        return False


def _alive(path: str) -> bool:
    """Whether a keeper listens on socket ``path`` (asked for its status; when it cannot be
    told, it is taken as alive). A keeper answers in milliseconds; one that does not within
    half a second is left alone, not waited for."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True
        with contextlib.suppress(OSError):  # a request it answers, so its log stays quiet
            sock.sendall(b'{"op": "status"}')
            sock.recv(65536)
        return True


def _unlink_idle_lock(lock: str) -> bool:
    """Remove lock file ``lock`` if nobody holds it (a keeper starting may); whether it was."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: held, left
        if _inode(lock) == os.fstat(fd).st_ino:
            os.unlink(lock)
            return True
        return False
    finally:
        os.close(fd)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _reap() -> None:
    """Collect the zygotes it forked that have ended."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _answer(listener: socket.socket, state: dict[str, Any],
            sockets: tuple[socket.socket, ...]) -> tuple[str, bool]:
    """Answer one connection: why the keeper ends now (or ""), and whether a run attached
    (a status request does not make it wait longer). ``state``: its folder, its idle time,
    the seconds it still waits."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return "", False
    fds: list[int] = []
    with conn:
        try:
            conn.settimeout(2.0)
            if _peer_uid(conn) != os.getuid():
                return "", False
            data, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            request = json.loads(data or b"{}")
            if not isinstance(request, dict):
                raise ValueError("a request is a JSON object")
            if request.get("op") == "status":
                reply, why = _status(state), ""
            else:
                reply, why = _handle(request, fds, (*sockets, conn))
            conn.sendall((json.dumps(reply) + "\n").encode())
            return why, request.get("op") == "attach"
        except Exception as err:  # one bad request ends neither the keeper nor its runs
            _say(f"a request failed: {type(err).__name__}: {err}")
            return "", False
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)


def _status(state: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid(), "folder": state["folder"], "python": sys.executable,
            "modules": len(sys.modules), "idle": state["idle"],
            "left": round(max(state["left"], 0.0), 1),
            "packages": sorted({str(name).partition(".")[0] for name, _, _ in IMPORTED})}


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _handle(request: dict[str, Any], fds: list[int],
            sockets: tuple[socket.socket, ...]) -> tuple[dict[str, Any], str]:
    """The reply to ``request``, and why the keeper ends after it (or "")."""
    if request.get("op") == "stop":
        return {"stopped": os.getpid()}, "asked to stop"
    if request.get("op") != "attach" or len(fds) != 4:
        return {"error": "expected an attach request with four file descriptors"}, ""
    stale = changed()
    if stale:
        return {"stale": stale}, f"stale: {stale}"
    pid = detached(())
    if pid == 0:  # the run's zygote
        try:
            for sock in sockets:
                sock.close()
            if isinstance(request.get("log"), str):
                try:
                    output_to(request["log"])
                except OSError as err:  # its output stays in the keeper's log
                    _say(f"zygote {os.getpid()}: {err}")
            serve(fds[0], fds[1], [(fds[2], fds[3])])
        finally:
            os._exit(0)
    _say(f"zygote {pid} serves a run")
    return {"pid": pid, "imported": IMPORTED}, ""
