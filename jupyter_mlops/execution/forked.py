"""A kernel forked from a zygote (:mod:`.zygote`), as jupyter_client sees it: the
provisioner that forks it, and the stand-in for the ``Popen`` it would otherwise hold."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING, Any

from jupyter_client.provisioning import LocalProvisioner

from .zygote import PER_KERNEL, SHELL_SET, birth, launcher

if TYPE_CHECKING:
    from .zygote import _Member

__all__ = ["ForkedKernel", "ForkProvisioner"]


class ForkedKernel:
    """What jupyter_client's provisioner expects of a ``Popen``, for a forked kernel."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, zygote: _Member) -> None:
        self.pid = pid
        self.zygote = zygote
        self.returncode: int | None = None
        self._born = birth(pid)

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
            # it may end between the look and the signal: nothing to signal then, as
            # ``Popen.send_signal`` has it (jupyter_client lets this error through)
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Launches a kernel by forking the zygote; as jupyter_client would where it cannot."""

    zygote: _Member | None = None
    #: Where a forked kernel appends its stdout and stderr (None: the zygote's); a kernel
    #: started instead gets them from ``launch_kernel``'s arguments.
    log: str | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Fork the kernel from the zygote when the command and environment allow."""
        zygote, env = self.zygote, dict(kwargs.get("env") or os.environ)
        same_env = zygote is not None and all(
            env.get(k) == zygote.env.get(k) for k in set(env) | set(zygote.env)
            if k not in PER_KERNEL | SHELL_SET)
        pid, split = None, launcher(cmd)
        if (zygote is not None and same_env and split is not None
                and [os.path.realpath(split[0][0]), *split[0][1:]]
                == [os.path.realpath(zygote.interpreter[0]), *zygote.interpreter[1:]]
                and zygote.pid is not None):
            cwd = str(kwargs.get("cwd") or os.getcwd())
            # its parent is the zygote, which ends when we do: the kernel then stops itself
            env["JPY_PARENT_PID"] = str(zygote.pid)
            # MPLBACKEND is left as the zygote set it, as ipykernel would have set it
            own: dict[str, str | None] = {
                k: env.get(k) for k in PER_KERNEL - {"MPLBACKEND"} | SHELL_SET}
            pid = zygote.fork(split[1], cwd, own, self.log)
        if pid is None:
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid, zygote)
        self.pid = self.pgid = pid  # the child made its own session before the reply came
        self.cwd = cwd
        return self.connection_info
