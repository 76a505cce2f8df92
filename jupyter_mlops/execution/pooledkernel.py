"""A kernel of the pool (:mod:`.kernelpool`): its start's outcome, its warm-up (the
modules its step imports, imported silently ahead), and its shutdown.

A warm-up that fails or prints anything (a warning on import would then be missing from the
step's output) makes the kernel unusable: the step starts a fresh kernel as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any

from .executors import ExecutorStopped
from .localcheck import LOCAL_CHECK
from .stepexec import Module

if TYPE_CHECKING:
    from .kernelpool import KernelPool

__all__ = ["WARMUP_TIMEOUT", "PooledKernel", "kill_kernel", "resolve", "settle", "shut_down",
           "warmed"]

WARMUP_TIMEOUT = 120.0
"""Seconds a kernel may take to start and import ahead before the step gives up on it."""

# Runs in the kernel, in a dict of its own: the user's namespace is never touched.
_WARM_SOURCE = LOCAL_CHECK + '''
for name, names, optional in MODULES:
    try:
        if not _local(name.partition(".")[0]):
            __import__(name, fromlist=list(names))
    except Exception:
        if not optional:
            raise
'''


class PooledKernel:
    """A kernel of the pool: its manager, its process, and whether it is ready for a step."""

    def __init__(self, key: str, pool: KernelPool) -> None:
        self.key = key
        self.pool = pool
        #: The jupyter_client ``AsyncKernelManager``, once created.
        self.manager: Any = None
        #: Resolves to True once the kernel is started and warmed, False if it cannot be used.
        self.ready: Future[bool] = Future()
        self.task: asyncio.Task[bool] | None = None
        self.stopped: Future[None] | None = None

    @property
    def pid(self) -> int | None:
        """The kernel's process id, once it runs."""
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        return None if process is None else process.pid

    def release(self) -> None:
        """The step is done with this kernel: it is shut down in the background."""
        self.pool.release(self)

    def wait(self, timeout: float = WARMUP_TIMEOUT) -> Any:
        """The started kernel manager, or None when the step should start a fresh kernel;
        :class:`.executors.ExecutorStopped` once the pool was killed (no fresh kernel then)."""
        try:
            ready = self.ready.result(timeout)
        except Exception:  # a start that failed or was cancelled: papermill starts one
            ready = False
        if self.pool.killed:
            raise ExecutorStopped(f"step `{self.key}` did not start: the run was stopped")
        return self.manager if ready else None


async def shut_down(kernel: PooledKernel, now: bool) -> None:
    """Shut the kernel down as nbclient does with its own; a start under way is cut."""
    task = kernel.task
    while task is None:  # its start is scheduled but has not begun
        await asyncio.sleep(0)
        task = kernel.task
    if not task.done():
        task.cancel()
    await asyncio.wait([task])
    manager = kernel.manager
    if manager is None or not manager.has_kernel:
        return
    try:
        if await manager.is_alive():
            # shutdown_kernel's own steps, its end watched every 10 ms instead of 100:
            # a run's last kernels end while the user waits for the run to end
            manager.shutting_down = True
            if now:
                await manager.signal_kernel(signal.SIGKILL)
            else:
                await manager.request_shutdown()
            await manager.finish_shutdown(pollinterval=0.01)
    except RuntimeError:  # it died meanwhile
        pass
    finally:
        await manager.cleanup_resources()


def kill_kernel(pid: int) -> None:
    """SIGKILL kernel ``pid`` now, with its children when it has a session of its own (as
    jupyter_client starts it); one that is gone already is no error."""
    with contextlib.suppress(OSError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)


def settle(ready: Future[bool], task: asyncio.Task[bool]) -> None:
    """Tell waiters how a start ended (its exception is read here, so never logged as lost)."""
    resolve(ready, not task.cancelled() and task.exception() is None and bool(task.result()))


def resolve(ready: Future[bool], usable: bool) -> None:
    """Resolve ``ready`` unless it is already (a kill answers waiters before the start ends)."""
    with contextlib.suppress(InvalidStateError):
        ready.set_result(usable)


async def _import_ahead(client: Any, modules: list[Module]) -> bool:
    """Import ``modules`` silently in the kernel; True if that went through without a word."""
    from queue import Empty

    if not modules:
        return True
    code = (f"exec(compile({_WARM_SOURCE!r}, '<jupyter-mlops warm-up>', 'exec'), "
            f"{{'__name__': '__main__', 'MODULES': {modules!r}}})")
    msg_id = client.execute(code, silent=True, store_history=False, allow_stdin=False)
    while True:
        try:
            reply = await client.get_shell_msg(timeout=1)
        except Empty:
            if not await client.is_alive():  # an import crashed it
                return False
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    if reply["content"]["status"] != "ok":
        return False
    # a warning or a print on import would be missing from the step's own output
    while True:
        msg = await client.get_iopub_msg(timeout=10)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return True
        if msg["msg_type"] not in ("status", "execute_input"):
            return False


async def warmed(manager: Any, modules: list[Module], startup_timeout: float) -> bool:
    """Once the kernel of ``manager`` started: wait until it answers, then import
    ``modules`` in it; True if it can be used for its step."""
    from .kernelready import wait_ready

    client = manager.client()
    client.start_channels()
    try:
        await wait_ready(client, startup_timeout)
        return await asyncio.wait_for(_import_ahead(client, modules), WARMUP_TIMEOUT)
    finally:
        client.stop_channels()
