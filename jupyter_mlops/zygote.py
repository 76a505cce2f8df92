"""Kernels forked from one process that imported once (:mod:`.zygote_main`).

A fresh interpreter per step re-imports pandas, scikit-learn, pyarrow and skops: seconds of
CPU each step, which one papermill kernel pays once. :class:`Zygote` starts one process that
imports them, and :class:`ForkProvisioner` (a jupyter_client provisioner) gets each step's
kernel by forking it, so a kernel is ready in a fraction of a second with its imports done.

Used only where a forked kernel is the kernel the step would have got: an ipykernel run by
the same Python (``python -m ipykernel_launcher``), with the environment the zygote started
with; anything else, or a zygote that refused its imports or died, and kernels start as
before. A step notebook still runs every cell itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

#: Environment variables a kernel's launch sets per kernel: they may differ from the
#: zygote's without what it imported having seen anything else.
PER_KERNEL = {"JPY_PARENT_PID", "JPY_SESSION_NAME", "MPLBACKEND"}

_START = ("import sys; sys.path.pop(0); from jupyter_mlops.zygote_main import main; main()")


def kernel_env(kernel_spec: Any) -> dict[str, str]:
    """The environment a kernel of ``kernel_spec`` starts with (before per-kernel variables)."""
    from string import Template

    env = dict(os.environ)
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


def forkable(kernel_spec: Any) -> bool:
    """Whether kernels of ``kernel_spec`` may be forked: a plain ipykernel, no provisioner,
    on Linux (macOS's system libraries, Accelerate among them, are not safe to use after
    ``fork()``, which is why Python's multiprocessing spawns there; Windows has no fork)."""
    return (sys.platform.startswith("linux")
            and launcher(list(kernel_spec.argv)) is not None
            and not (kernel_spec.metadata or {}).get("kernel_provisioner")
            and Path(kernel_spec.argv[0]).name.startswith("python"))


class Zygote:
    """One zygote process: imports on request, forks kernels, reports when they end."""

    def __init__(self, interpreter: list[str], workdir: str, env: dict[str, str]) -> None:
        #: The kernel's interpreter and its options, as the zygote runs them.
        self.interpreter = interpreter
        self.env = env
        self.usable = True
        self.why = ""
        self.imported: set[tuple[str, tuple[str, ...], bool]] = set()
        self.exits: dict[int, int] = {}
        self._changed = threading.Condition()
        self._lock = threading.Lock()  # one request at a time, answered in order
        self._replies: list[dict[str, Any]] = []
        requests_r, self._requests = os.pipe()
        replies, replies_w = os.pipe()
        try:
            self.process = subprocess.Popen(
                [*interpreter, "-c", _START, str(requests_r), str(replies_w)], cwd=workdir, env=env,
                stdin=subprocess.DEVNULL, pass_fds=(requests_r, replies_w),
                start_new_session=True)
        finally:
            os.close(requests_r)
            os.close(replies_w)
        self._reader = threading.Thread(target=self._read, args=(replies,), daemon=True,
                                        name="mlops-zygote")
        self._reader.start()

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
            self.why = self.why or "the zygote ended"
            self._changed.notify_all()

    def _ask(self, request: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        with self._lock:
            if not self.usable:
                return None
            try:
                os.write(self._requests, (json.dumps(request) + "\n").encode())
            except OSError:
                self.usable = False
                return None
            with self._changed:
                if not self._changed.wait_for(lambda: self._replies or not self.usable,
                                              timeout):
                    self.usable, self.why = False, "the zygote did not answer in time"
                return self._replies.pop(0) if self._replies else None

    def preload(self, modules: list[tuple[str, tuple[str, ...], bool]],
                timeout: float = 120.0) -> bool:
        """Import ``modules`` in the zygote (those not yet asked for); False if it cannot
        be used (then never again)."""
        missing = [m for m in modules if m not in self.imported]
        if missing and self.usable:
            self.imported.update(missing)
            reply = self._ask({"op": "import", "modules": missing}, timeout)
            if reply is None or not reply.get("ok"):
                self.usable = False
                self.why = reply.get("why", "") if reply else self.why
        return self.usable

    def fork(self, argv: list[str], cwd: str, env: dict[str, str | None]) -> int | None:
        """A new kernel process (its pid) running ``argv`` after the launcher, in ``cwd``,
        with ``env`` set in (None: removed from) the zygote's environment; or None."""
        reply = self._ask({"op": "fork", "argv": argv, "cwd": cwd, "env": env}, 30.0)
        return None if reply is None else int(reply["pid"])

    def wait(self, pid: int, timeout: float | None = None) -> int | None:
        """The exit code of forked kernel ``pid`` once it ends, or None at ``timeout``."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self.exits or not self.usable, timeout)
            return self.exits.get(pid)

    def kill(self) -> None:
        """Kill the zygote at once (its forked kernels are killed by their managers)."""
        self.usable = False
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)

    def close(self) -> None:
        """End the zygote. It holds nothing to save, and tearing down what it imported would
        take a second: it is killed, once its kernels have ended."""
        self.kill()
        self.process.wait()
        try:
            os.close(self._requests)
        except OSError:
            pass


class ForkedKernel:
    """What jupyter_client's provisioner expects of a ``Popen``, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, zygote: Zygote) -> None:
        self.pid = pid
        self.zygote = zygote
        self.returncode: int | None = None
        self._born = self._birth()

    def poll(self) -> int | None:
        """The exit code, or None while it runs."""
        if self.returncode is None:
            self.returncode = self.zygote.exits.get(self.pid)
            if self.returncode is None and not self._exists():
                self.returncode = -signal.SIGKILL  # the zygote is gone: nobody reports
        return self.returncode

    def _exists(self) -> bool:
        """Whether the process runs (a zombie, ended but not yet reaped by whoever adopted
        it, does not)."""
        import psutil

        try:
            process = psutil.Process(self.pid)
            # a pid reused by another process, after this one was reaped, is not this one
            return (process.status() != psutil.STATUS_ZOMBIE
                    and process.create_time() == self._born)
        except psutil.NoSuchProcess:
            return False

    def _birth(self) -> float | None:
        import psutil

        try:
            return psutil.Process(self.pid).create_time()
        except psutil.NoSuchProcess:
            return None

    def wait(self, timeout: float | None = None) -> int:
        """Block until the kernel ends; its exit code."""
        while self.poll() is None:
            self.zygote.wait(self.pid, 0.1 if timeout is None else min(timeout, 0.1))
            if timeout is not None:
                timeout -= 0.1
                if timeout <= 0 and self.poll() is None:
                    raise subprocess.TimeoutExpired(str(self.pid), 0)
        return self.returncode if self.returncode is not None else 0

    def send_signal(self, signum: int) -> None:
        """Signal the kernel, unless it has ended (its pid may be another's now)."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches a kernel by forking the zygote; as jupyter_client would where it cannot."""

    zygote: Zygote | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Fork the kernel from the zygote when the command and environment allow."""
        zygote, env = self.zygote, dict(kwargs.get("env") or os.environ)
        same_env = zygote is not None and all(
            env.get(k) == zygote.env.get(k) for k in set(env) | set(zygote.env)
            if k not in PER_KERNEL)
        pid, split = None, launcher(cmd)
        if (zygote is not None and same_env and split is not None
                and [os.path.realpath(split[0][0]), *split[0][1:]]
                == [os.path.realpath(zygote.interpreter[0]), *zygote.interpreter[1:]]):
            cwd = str(kwargs.get("cwd") or os.getcwd())
            # its parent is the zygote, which ends when we do: the kernel then stops itself
            env["JPY_PARENT_PID"] = str(zygote.process.pid)
            own: dict[str, str | None] = {k: env.get(k) for k in PER_KERNEL - {"MPLBACKEND"}}
            pid = zygote.fork(split[1], cwd, own)
        if pid is None:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid, zygote)
        self.pid = self.pgid = pid  # the child made its own session before the reply came
        self.cwd = cwd
        return self.connection_info


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
