"""Zygotes kept warm between runs (:mod:`.keeper`): whether to keep them, where they
listen, and how a run attaches to one.

After a run, a process holding what the run's kernels imported (pandas, scikit-learn, skops)
waits ``JUPYTER_MLOPS_KEEP_WARM`` seconds (900 unless set; 0 keeps none) for the next run of
the same pipeline folder with the same Python, environment and process limits. That run's
kernels fork from it, so re-running after an edit does not wait seconds for those imports
again. A keeper holds memory while it waits (what the imports take: 186 MB resident with
pandas, scikit-learn, skops and matplotlib), and no CPU; a user keeps at most :data:`MOST_KEPT`, and
``jupyter mlops warm --stop`` ends them.

As in any one run, kernels forked from one keeper share its string hash seed (a new
interpreter draws its own): the order of a set of strings is the same from run to run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["VARIABLE", "idle_seconds", "folder", "socket_path", "key_of", "fits", "attach",
           "make_room", "kept", "status", "stop"]

#: The environment variable that sets how long a keeper waits for the next run (seconds).
VARIABLE = "JUPYTER_MLOPS_KEEP_WARM"
#: How long a keeper waits unless :data:`VARIABLE` says otherwise: long enough for an edit.
DEFAULT_IDLE = 900.0
#: The longest name a Unix socket may have on Linux (``sun_path`` holds 108 bytes).
MAX_SOCKET_PATH = 107
#: How long a run waits for a keeper's answer before it starts its own zygote (it answers
#: in milliseconds: it looks at the files its modules came from, then forks).
ATTACH_TIMEOUT = 3.0
#: How many keepers a user keeps at most (each holds a few hundred MB): a run's keeper
#: replaces the one closest to its end.
MOST_KEPT = 4

_LOG = logging.getLogger("jupyter_mlops.kernels")
_said: set[str] = set()


def idle_seconds(env: dict[str, str] | None = None) -> float:
    """How long a keeper waits for the next run; 0 when none is to be kept (a value that
    is not a number of seconds is said once in the log and keeps none)."""
    value = (os.environ if env is None else env).get(VARIABLE, "").strip()
    if not value:
        return DEFAULT_IDLE
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        if value not in _said:
            _said.add(value)
            _LOG.warning("%s=%s is not a number of seconds: no zygote is kept warm after the run "
                         "(set it to 0 to say so, or to how long to wait for the next run)",
                         VARIABLE, value)
        return 0.0
    return seconds


def folder() -> Path | None:
    """The folder of this user's keepers' sockets and logs (made if missing), or None when it
    is not this user's alone (then nothing is kept: another user could reach the kernels)."""
    path = Path(tempfile.gettempdir()) / f"jupyter-mlops-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or info.st_mode & 0o077):
        _LOG.info("no zygote is kept warm: %s is not a folder of this user's alone", path)
        return None
    return path


def socket_path(interpreter: list[str], workdir: str, env: dict[str, str]) -> Path | None:
    """Where the keeper for kernels of ``interpreter`` in ``workdir`` with ``env`` (and this
    process's limits) listens, or None when none is kept."""
    if idle_seconds() <= 0:
        return None
    where = folder()
    if where is None:
        return None
    path = where / f"z-{key_of(interpreter, workdir, env)[:24]}.sock"
    if not fits(path):
        if "long" not in _said:
            _said.add("long")
            _LOG.info("no zygote is kept warm: a socket in %s would have a longer name than "
                      "Unix sockets allow; set TMPDIR to a shorter folder", where)
        return None
    return path


def key_of(interpreter: list[str], workdir: str, env: dict[str, str]) -> str:
    """A hex digest of what a zygote's imports depend on: the interpreter, the folder, the
    environment and this process's limits; zygotes of one key may serve each other's runs."""
    from .zygote import PER_KERNEL, SHELL_SET

    # the interpreter's own path: a virtual environment's python links to its base's, and
    # both must not share a keeper; MPLBACKEND, if the user set it, chose the backend; how
    # long a keeper waits is no import's business
    skip = (PER_KERNEL - {"MPLBACKEND"}) | SHELL_SET | {VARIABLE}
    key = json.dumps({"python": os.path.abspath(interpreter[0]), "options": interpreter[1:],
                      "folder": os.path.realpath(workdir), "limits": _limits(),
                      "env": sorted((k, v) for k, v in env.items() if k not in skip)})
    return hashlib.sha256(key.encode()).hexdigest()


def fits(path: Path) -> bool:
    """Whether a keeper may listen at ``path``: it binds it under a longer name first (its
    pid appended)."""
    return len(os.fsencode(path)) + 8 <= MAX_SOCKET_PATH


def _limits() -> dict[str, Any]:
    """What a forked kernel inherits from the process that started its zygote besides the
    environment: its control group (a memory limit), the CPUs it may use (BLAS sizes its
    threads by them), its resource limits, priority and umask."""
    import resource

    try:
        group = Path("/proc/self/cgroup").read_text()
    except OSError:
        group = ""
    mask = os.umask(0o022)
    os.umask(mask)
    return {"cgroup": group, "cpus": sorted(os.sched_getaffinity(0)),
            "rlimits": [resource.getrlimit(getattr(resource, name))
                        for name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_NOFILE",
                                     "RLIMIT_CPU", "RLIMIT_NPROC")],
            "nice": os.getpriority(os.PRIO_PROCESS, 0), "umask": mask}


def _ask(path: Path, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
    """Send ``request`` (with ``fds``) to the keeper at ``path``; its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(ATTACH_TIMEOUT)
        sock.connect(str(path))
        data = json.dumps(request).encode()
        if fds:
            socket.send_fds(sock, [data], fds)
        else:
            sock.sendall(data)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the keeper closed the connection")
            reply += chunk
    answer = json.loads(reply)
    if not isinstance(answer, dict):
        raise ValueError("not a JSON object")
    return answer


def attach(path: Path, fds: list[int], log: Path | None = None) -> dict[str, Any] | None:
    """Have the keeper at ``path`` fork a zygote serving a run on ``fds`` (its output
    appended to ``log``): its reply (``pid``, ``imported``), or None when there is no keeper
    there or it cannot serve. Once sent, ``fds`` must not serve another zygote even then: a
    keeper too slow to answer may still fork one on them."""
    if not path.exists():
        return None
    try:
        reply = _ask(path, {"op": "attach", "log": None if log is None else str(log)}, fds)
    except (OSError, ValueError) as err:
        _LOG.debug("the warm zygote at %s did not answer: %s", path, err)
        return None
    if "stale" in reply:
        _LOG.info("the warm zygote ended, a run starts a new one: %s", reply["stale"])
        return None
    return reply if isinstance(reply.get("pid"), int) else None


def make_room(mine: Path) -> None:
    """Keep at most :data:`MOST_KEPT` keepers of this user, ``mine`` among them: stop those
    closest to their end (the least recently used) to make room for it."""
    states = [(state["left"], path) for path in kept() if path != mine
              for state in [status(path)] if state is not None]
    for _, path in sorted(states)[:max(0, len(states) - (MOST_KEPT - 1))]:
        stop(path)


def kept() -> list[Path]:
    """The sockets of this user's keepers."""
    where = folder()
    return sorted(where.glob("z-*.sock")) if where is not None else []


def status(path: Path) -> dict[str, Any] | None:
    """What the keeper at ``path`` says of itself (``pid``, ``folder``, ``python``,
    ``modules``, ``packages``, ``idle``, ``left``: seconds it still waits), or None when none
    answers there."""
    try:
        reply = _ask(path, {"op": "status"})
    except (OSError, ValueError):
        return None
    return reply if isinstance(reply.get("pid"), int) else None


def stop(path: Path) -> int | None:
    """Stop the keeper at ``path``: its pid, or None when none answered there."""
    try:
        reply = _ask(path, {"op": "stop"})
    except (OSError, ValueError):
        return None
    pid = reply.get("stopped")
    return pid if isinstance(pid, int) else None
