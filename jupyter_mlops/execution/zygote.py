"""Kernels forked from a process that imported once (:mod:`.zygote_main`).

A fresh interpreter per step re-imports pandas, scikit-learn, pyarrow and skops: seconds of
CPU each step, which one papermill kernel pays once. :class:`Zygote` starts a process that
imports them (and a successor for packages only later steps need), and
:class:`.forked.ForkProvisioner` (a jupyter_client provisioner) gets each step's kernel by
forking it, so a kernel is ready in a fraction of a second with its imports done.

Used only where a forked kernel is the kernel the step would have got: an ipykernel run by
the same Python (``python -m ipykernel_launcher``), with the environment the zygote started
with; anything else, or a zygote that refused its imports or died, and kernels start as
before. A step notebook still runs every cell itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .stepexec import Module

#: Environment variables a kernel's launch sets per kernel: they may differ from the
#: zygote's without what it imported having seen anything else.
PER_KERNEL = {"JPY_PARENT_PID", "JPY_SESSION_NAME", "MPLBACKEND"}
#: Variables a shell sets anew for each command it runs (``_``: the command's path), which no
#: import reads: a zygote kept warm by an earlier run serves a run whose values differ, and
#: each kernel gets the run's own.
SHELL_SET = {"_", "OLDPWD", "PWD", "SHLVL"}

#: The zygote's exit code when the kernel's environment has no jupyter-mlops runtime.
NO_RUNTIME = 3
# without jupyter-mlops in the kernel's environment the zygote ends at once, without a
# traceback on the user's terminal, and kernels start as before
_START = ("import sys; sys.path.pop(0)\n"
          "try:\n    from jupyter_mlops.execution.zygote_main import main\n"
          f"except ImportError:\n    sys.exit({NO_RUNTIME})\n"
          "main()")


def kernel_env(kernel_spec: Any) -> dict[str, str]:
    """The environment a kernel of ``kernel_spec`` starts with (before per-kernel variables)."""
    from string import Template

    from .stepexec import kernel_environ

    env = kernel_environ()
    # as jupyter_client's provisioners do it
    env.update({k: Template(v).safe_substitute(env) for k, v in (kernel_spec.env or {}).items()})
    if (kernel_spec.language or "").lower().startswith("python"):
        env.pop("PYTHONEXECUTABLE", None)
    return env


def launcher(cmd: list[str]) -> tuple[list[str], list[str]] | None:
    """A kernel command split into the interpreter with its options and the launcher's
    arguments (``python -X... -m ipykernel_launcher ARGS``); None for any other kernel."""
    for at in range(1, len(cmd) - 1):
        if cmd[at:at + 2] == ["-m", "ipykernel_launcher"]:
            interpreter = list(cmd[:at])
            if all(option.startswith("-") for option in interpreter[1:]):
                return interpreter, list(cmd[at + 2:])
            return None
    return None


def not_forkable(kernel_spec: Any) -> str:
    """Why kernels of ``kernel_spec`` may not be forked, or "" when they may: a plain
    ipykernel, no provisioner, on Linux (macOS's system libraries, Accelerate among them, are
    not safe to use after ``fork()``, which is why Python's multiprocessing spawns there;
    Windows has no fork)."""
    argv = list(kernel_spec.argv)
    if not sys.platform.startswith("linux"):
        return f"kernels are forked only on Linux, not on {sys.platform}"
    if launcher(argv) is None or not Path(argv[0]).name.startswith("python"):
        return ("the kernel is not started as `python -m ipykernel_launcher` "
                f"({' '.join(argv[:4])})")
    if (kernel_spec.metadata or {}).get("kernel_provisioner"):
        return "the kernel has a provisioner of its own"
    return ""


class _Member:
    """One zygote process: its channel, what it imported, the kernels it forked and how they
    ended. The first is the client's child; its successor is forked from it."""

    def __init__(self, requests: int, replies: int, family: Zygote, first: bool = False) -> None:
        self.env, self.interpreter = family.env, family.interpreter
        self.family, self.first_of_family = family, not first
        self.pid: int | None = None
        self.usable = True
        self.why = ""
        #: Whether it answered for its own imports yet (a successor's first message does).
        self.started = not first
        self.imported: set[Module] = set()
        self.exits: dict[int, int] = {}
        self._changed = threading.Condition()
        self._lock = threading.Lock()  # one request at a time, answered in order
        self._replies: list[dict[str, Any]] = []
        self.requests = requests
        threading.Thread(target=self._read, args=(replies,), daemon=True,
                         name="mlops-zygote").start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as replies:
            for line in replies:
                message = json.loads(line)
                with self._changed:
                    if "exit" in message:
                        self.exits[message["exit"]] = message["code"]
                    else:
                        self._replies.append(message)
                    self._changed.notify_all()
        with self._changed:
            self.usable = False
            self.why = self.why or self._ended()
            self._changed.notify_all()

    def _ended(self) -> str:
        """Why the zygote's channel closed, as far as its exit code tells."""
        code = None
        process = self.family.process
        # the successor is the first's child, and a first forked warm the keeper's: not ours
        if self.first_of_family and process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = process.wait(5)
        if code == NO_RUNTIME:
            return ("the kernel's environment has no jupyter-mlops runtime to fork kernels "
                    "from (`jupyter mlops kernel PYTHON` installs it)")
        return "the zygote ended" + (f" with exit code {code}" if code else "")

    def _answer(self, timeout: float) -> dict[str, Any] | None:
        with self._changed:
            if not self._changed.wait_for(lambda: self._replies or not self.usable, timeout):
                self.usable, self.why = False, "the zygote did not answer in time"
            return self._replies.pop(0) if self._replies else None

    def ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Send ``request``; its answer, or None if this zygote cannot be used."""
        with self._lock:
            if not self.usable:
                return None
            try:
                os.write(self.requests, (json.dumps(request) + "\n").encode())
            except OSError:
                self.usable = False
                return None
            return self._answer(timeout)

    def _refused(self, reply: dict[str, Any] | None) -> None:
        if reply is None or not reply.get("ok"):
            self.usable = False
            self.why = reply.get("why", "") if reply else self.why

    def start(self, timeout: float) -> bool:
        """Wait until a successor has its imports; whether it can be used."""
        with self._lock:
            if not self.started:
                # marked once answered: while it imports, :meth:`Zygote.member_for` may still
                # choose the first for a kernel that needs no new package, even when another
                # thread waits here (the leader offering the successor, :mod:`.hostshare`)
                self._refused(self._answer(timeout))
                self.started = True
        return self.usable

    def preload(self, modules: list[Module], timeout: float = 120.0) -> bool:
        """Import ``modules`` (those not yet asked for); False if it cannot be used (then
        never again)."""
        missing = [m for m in modules if m not in self.imported]
        if missing and self.usable:
            self.imported.update(missing)
            self._refused(self.ask({"op": "import", "modules": missing}, timeout))
        return self.usable

    def fork(self, argv: list[str], cwd: str, env: dict[str, str | None],
             log: str | None = None) -> int | None:
        """A new kernel process (its pid) running ``argv`` after the launcher, in ``cwd``,
        with ``env`` set in (None: removed from) the zygote's environment, its stdout and
        stderr appended to ``log`` (None: the zygote's); or None."""
        reply = self.ask({"op": "fork", "argv": argv, "cwd": cwd, "env": env, "log": log},
                         30.0)
        return None if reply is None or reply.get("pid") is None else int(reply["pid"])

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The exit code of forked kernel ``pid`` once it ends, or None at ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self.exits or not self.usable, timeout)
            return self.exits.get(pid)


def _packages(modules: Any) -> set[str]:
    return {name.partition(".")[0] for name, _, _ in modules}


class Zygote:
    """The zygotes of a run: the first, and at most one successor forked from it.

    The first imports what the first step needs, so its kernel starts soon. Once that
    kernel is forked, a successor forked from the first imports what the later steps need
    beyond it (skops, to save a model, takes seconds), while the first goes on forking
    kernels for the steps that need no new package: the two cores work at once.
    """

    def __init__(self, interpreter: list[str], workdir: str, env: dict[str, str],
                 log: Path | None = None, shared: Path | None = None) -> None:
        """Start the first zygote (forked from a warm one where :mod:`.warm` keeps one, else
        from the one another worker of the run offers at ``shared``, :mod:`.hostshare`);
        its stdout and stderr go to ``log`` (None: ours)."""
        from . import warm

        #: The kernel's interpreter and its options, as the zygotes run them.
        self.interpreter = interpreter
        self.env = env
        self.successor: _Member | None = None
        self._spawning = threading.Lock()
        #: Where a warm zygote for these kernels listens (None: none is kept).
        self.socket = warm.socket_path(interpreter, workdir, env)
        #: Our child, the first zygote; None when a warm zygote forked it.
        self.process: subprocess.Popen[bytes] | None = None
        channels, theirs = _channels()
        attached = None
        #: Where the first zygote came from: "warm" (an earlier run's), "shared" (another
        #: worker's of this run), or "" (started here).
        self.source = ""
        try:
            if log is not None and (self.socket or shared) is not None:
                log.parent.mkdir(parents=True, exist_ok=True)
            for source, path in (("warm", self.socket), ("shared", shared)):
                if path is None or attached is not None:
                    continue
                attached = warm.attach(path, theirs, log)
                if attached is None:  # pipes a keeper got may yet be served: new ones
                    for fd in [*theirs, *(c[i] for c in channels for i in (1, 2))]:
                        os.close(fd)
                    channels, theirs = _channels()
                else:
                    self.source = source
            if attached is None:
                self.process = self._popen(workdir, log, channels, theirs)
        finally:
            for fd in theirs:
                os.close(fd)
        self.first = _Member(channels[0][1], channels[0][2], self)
        if attached is None:
            self.first.pid = self.process.pid if self.process is not None else None
        else:
            self.first.pid = int(attached["pid"])
            self.first.imported = {(str(name), tuple(names), bool(optional))
                                   for name, names, optional in attached.get("imported", [])}
        self._born = birth(self.first.pid)
        self._spare: tuple[int, int] | None = (channels[1][1], channels[1][2])

    def _popen(self, workdir: str, log: Path | None, channels: list[tuple[int, ...]],
               theirs: list[int]) -> subprocess.Popen[bytes]:
        from .kernellog import output_to

        with output_to(log) as output:
            return subprocess.Popen(
                [*self.interpreter, "-c", _START, str(channels[0][0]), str(channels[0][3]),
                 f"{channels[1][0]},{channels[1][3]}"], cwd=workdir, env=self.env,
                stdin=subprocess.DEVNULL, pass_fds=theirs, start_new_session=True, **output)

    @property
    def usable(self) -> bool:
        """Whether the first zygote can still fork kernels."""
        return self.first.usable

    @property
    def why(self) -> str:
        """Why the first zygote cannot be used, if it cannot."""
        return self.first.why

    def spawn(self, modules: list[Module]) -> None:
        """Start the successor, to import those of ``modules`` in packages the first has not
        imported (nothing to do if there are none)."""
        more = [m for m in modules if m not in self.first.imported]
        if not _packages(more) - _packages(self.first.imported):
            return
        with self._spawning:
            if self.successor is not None or self._spare is None:
                return
            reply = self.first.ask({"op": "spawn", "modules": more}, 30.0)
            if reply is None or reply.get("pid") is None:
                return
            successor = _Member(*self._spare, self, first=True)
            self._spare = None
            successor.pid = int(reply["pid"])
            successor.imported = self.first.imported | set(more)
            self.successor = successor

    def member_for(self, modules: list[Module], timeout: float = 120.0) -> _Member | None:
        """The zygote to fork a kernel needing ``modules`` from, once it imported them.

        The successor once it is ready. While it imports: the first, which imports what it
        lacks itself, unless that includes a package the first has not imported at all and
        the successor is importing (a new package is what takes seconds): then the
        successor, which began earlier. None if neither can be used.
        """
        successor, first = self.successor, self.first
        if successor is not None and successor.usable and not successor.started:
            new = _packages(m for m in modules if m not in first.imported)
            if first.usable and not (new - _packages(first.imported)) & _packages(
                    successor.imported):
                successor = None  # the first does it as soon
        if (successor is not None and successor.usable and successor.start(timeout)
                and successor.preload(modules, timeout)):
            return successor
        return first if first.preload(modules, timeout) else None

    def keep(self) -> None:
        """Leave what the zygotes imported warm for the next run (:mod:`.keeper`): the
        successor, if ready, else the first forks a keeper, which then imports what the other
        imported beyond it (the first may have imported more after the successor was forked
        from it). Nothing when none is to be kept."""
        from . import warm

        if self.socket is None:
            return
        successor = self.successor
        ready = successor is not None and successor.started and successor.usable
        member = successor if ready and successor is not None else self.first
        if member.usable:
            warm.make_room(self.socket)
            self._keep_at(member, self.socket, warm.idle_seconds(),
                          self.socket.with_suffix(".log"))

    def offer(self, path: Path, idle: float, while_file: Path | None = None) -> int | None:
        """Keep what the zygotes imported for the run's other workers on this machine
        (:mod:`.hostshare`) at ``path``, for ``idle`` seconds without one attaching and
        while ``while_file`` is there (the run's): the successor's, once it imported (waited
        for), else the first's. The keeper's pid, or None."""
        successor = self.successor
        ready = successor is not None and successor.start(120.0)
        return self._keep_at(successor if ready and successor else self.first, path, idle,
                             path.with_suffix(".log"), while_file)

    def _keep_at(self, member: _Member, path: Path, idle: float, log: Path,
                 while_file: Path | None = None) -> int | None:
        """Have ``member`` fork a keeper at ``path`` that holds what both zygotes imported
        (while ``while_file`` is there, if named); its pid, or None."""
        if not member.usable:
            return None
        successor = self.successor
        ready = successor is not None and successor.started and successor.usable
        modules = self.first.imported | (successor.imported if ready and successor else set())
        reply = member.ask({"op": "keep", "socket": str(path), "idle": idle, "log": str(log),
                            "modules": [[n, list(names), o] for n, names, o in sorted(modules)],
                            "while": None if while_file is None else str(while_file)}, 10.0)
        return None if reply is None or reply.get("pid") is None else int(reply["pid"])

    def kill(self) -> None:
        """Kill the zygotes at once (their forked kernels are killed by their managers)."""
        self.first.usable = False
        if self.successor is not None:
            self.successor.usable = False
        pid = self.first.pid
        if self.process is not None:
            # it may end and be reaped (by its channel's reader) between the look and the
            # kill: then there is nothing to kill
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)  # the successor is in its group
        elif pid is not None and self._born is not None and birth(pid) == self._born:
            with contextlib.suppress(OSError):  # its own session: the successor is in it
                os.killpg(pid, signal.SIGKILL)

    def close(self) -> None:
        """End the zygotes, once their kernels have ended, after one of them left a warm
        keeper (:meth:`keep`). They hold nothing to save, and tearing down what they
        imported would take a second: they are killed."""
        self.keep()
        self.kill()
        if self.process is not None:
            self.process.wait()
        members = [self.first, *([self.successor] if self.successor is not None else [])]
        for member in members:
            # a successor, and a first forked warm, are not our children: killed with the
            # group, reaped by their parent
            if member.pid is not None and (member is not self.first or self.process is None):
                _wait_gone(member.pid)
        for fd in [*(m.requests for m in members), *(self._spare or ())]:
            try:
                os.close(fd)
            except OSError:
                pass


def _channels() -> tuple[list[tuple[int, ...]], list[int]]:
    """Two channels of pipes, each (requests read, write, replies read, write), and the ends
    a zygote keeps (it reads requests, writes replies)."""
    channels = [(*os.pipe(), *os.pipe()) for _ in range(2)]
    return channels, [fd for c in channels for fd in (c[0], c[3])]


def birth(pid: int | None) -> float | None:
    """When process ``pid`` started (None: it is gone): a pid reused later is another's."""
    import psutil

    if pid is None:
        return None
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    """Wait, a while at most, until process ``pid`` has ended (gone, or a zombie), so no
    process of a run is left when the run returns."""
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.Error:
            return
        time.sleep(0.01)


def interpreter_of(kernel_spec: Any) -> list[str]:
    """The interpreter and its options a kernel of ``kernel_spec`` runs (``python`` named
    as jupyter_client resolves it: this process's own interpreter)."""
    split = launcher(list(kernel_spec.argv))
    if split is None:
        raise ValueError("not an ipykernel command")
    interpreter = split[0]
    major, minor = sys.version_info[:2]
    names = {"python", f"python{major}", f"python{major}.{minor}"}
    if interpreter[0] in names:
        interpreter[0] = sys.executable
    return interpreter
