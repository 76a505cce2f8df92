"""Kernels started ahead of their steps, so kernel starts and imports leave the critical path.

While a step runs, :class:`KernelPool` starts the kernels of the steps expected next (at most
``size`` wait at a time; the runner makes it ``-j`` + 1), in the notebook's folder, with the
pipeline's kernel and arguments, as papermill would start them; then each imports, silently
(``store_history=False``, in a throwaway namespace), the modules its step imports before it
does anything else. The step notebook still runs every cell, setup included, so it stays
runnable by plain papermill and its executed copy is the same; its imports are then found in
``sys.modules``.

What may be imported ahead is chosen so that it cannot change a result
(:func:`.stepexec.warm_plan`): the imports of a step's cells, in order, up to the first
statement that could change how a later import behaves (anything but imports, definitions
and literal assignments: a call that sets an environment variable or ``sys.path``, a magic,
a shell command); modules found in the notebook's folder are never imported ahead, since an
earlier step may still be writing them.
A warm-up that fails or prints anything (a warning on import would then be missing from the
step's output) gets its kernel shut down, and the step starts a fresh kernel as before.

Where the kernel allows it, kernels are not started but forked from a zygote (:mod:`.zygote`)
that imported what the steps import once, or from its successor, which imports the packages
later steps need meanwhile; forks happen one at a time, in the order their kernels were
asked for, so a later step's imports never hold up an earlier step's kernel.

Each kernel's start, warm-up and shutdown are :mod:`.pooledkernel`'s. Given the run's
folder (``logs``), each kernel's own stdout and stderr, forked or started, go
to its step's log there, the zygote's to its own (:mod:`.kernellog`), not to the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .pooledkernel import PooledKernel, kill_kernel, resolve, settle, shut_down, warmed
from .stepexec import KernelCommand, Module, kernel_environ

#: How kernels were got: ``run --verbose`` shows its INFO lines.
_LOG = logging.getLogger("jupyter_mlops.kernels")

if TYPE_CHECKING:
    from .hostshare import Share
    from .zygote import Zygote, _Member

#: The steps expected to start next, in that order.
Planner = Callable[[], list[str]]


class KernelPool:
    """Kernels started and warmed ahead of the steps that will use them.

    ``planner`` names the steps expected next; whenever a leased kernel is ready, the pool
    starts kernels for the first of them until ``size`` wait unused. ``plan(step)`` says what
    a step's kernel imports ahead (:func:`.stepexec.step_plan`). All kernel work runs on one
    event loop in a thread of the pool's own. :meth:`close` shuts every kernel down.
    """

    def __init__(self, kernel: KernelCommand, size: int, planner: Planner | None = None,
                 plan: Callable[[str], list[Module]] | None = None, *,
                 preload: Callable[[str], list[Module]] | None = None,
                 startup_timeout: float = 60.0, fork: bool = True,
                 logs: Path | None = None) -> None:
        self.kernel_name = kernel.name
        self.workdir = str(kernel.workdir)
        self.extra_arguments = list(kernel.extra_arguments)
        self.size = max(1, size)
        self.planner = planner
        self.plan = plan
        self._plans: dict[str, list[Module]] = {}
        self._preloads: dict[str, list[Module]] = {}
        #: Forks in the order their kernels were asked for (a later step's imports wait).
        self._forking: asyncio.Lock | None = None
        self._said: set[str] = set()
        self._spec_manager: Any = None
        self.startup_timeout = startup_timeout
        self.kernels: list[PooledKernel] = []
        self._idle: dict[str, PooledKernel] = {}
        #: Steps leased or discarded: a refill that listed one before it was taken does not
        #: start a kernel for it after.
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        #: Set by :meth:`kill`: a step waiting for its kernel is told to stop, not to start one.
        self.killed = False
        #: Fork kernels from a zygote (:mod:`.zygote`) where the kernel allows it.
        self.fork = fork
        self.zygote: Zygote | None = None
        #: What the zygote imports before it forks a step's kernel (else the step's plan).
        self.preload = preload
        #: The run folder whose logs the kernels' own output goes to (None: inherited).
        self.logs = logs
        #: The steps whose imports the successor zygote makes (:meth:`_spawn`), when they are
        #: more than those :attr:`planner` names (a Dask worker's pool starts kernels for a
        #: chain's next two only, and a later branch's model would wait for skops).
        self.later: Planner | None = None
        #: This worker's part where a run's workers on one machine share a zygote's imports
        #: (:mod:`.hostshare`; set by :func:`.daskworker.warm_up`).
        self.share: Share | None = None
        self._leased = False  # a step asked for a kernel (:meth:`lease`)
        self._warming: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="mlops-kernel-pool")
        self._thread.start()

    def modules(self, key: str) -> list[Module]:
        """What the kernel of step ``key`` imports ahead (its plan, made once)."""
        if key not in self._plans:
            self._plans[key] = self.plan(key) if self.plan is not None else []
        return self._plans[key]

    def prepare(self, key: str) -> None:
        """Start a kernel for step ``key`` unless one waits for it already."""
        self._loop.call_soon_threadsafe(self._prepare, key)

    def warm_up(self, key: str) -> None:
        """Start the zygote and its imports for step ``key`` now, forking nothing yet: a
        worker of a cluster that no step has reached yet is ready when one does. Returns at
        once; a warm-up that fails costs nothing (the step starts its kernel as before)."""
        def begin() -> None:
            task = self._loop.create_task(self._warm_zygote(key))
            self._warming.add(task)
            task.add_done_callback(self._warming.discard)

        self._loop.call_soon_threadsafe(begin)

    def lease(self, key: str) -> PooledKernel | None:
        """The kernel prepared for step ``key`` (else one started now); None once closed.

        The caller waits for it with :meth:`PooledKernel.wait` and gives it back with
        :meth:`release`.
        """
        with self._lock:
            if self._closed:
                return None
            self._taken.add(key)
            kernel = self._idle.pop(key, None)
        self._leased = True  # a step waits: a follower stops waiting for long
        if self.share is not None:
            self.share.hurry()
        if kernel is None:
            modules = self.modules(key)
            with self._lock:
                kernel = None if self._closed else self._start(key, modules)
            if kernel is None:
                return None
        self._loop.call_soon_threadsafe(self._refill_when_ready, kernel)
        return kernel

    def discard(self, key: str, *, taken: bool = True) -> None:
        """Stop the kernel prepared for ``key``: its step needs none (its result was reused),
        or, not ``taken``, it is no longer expected here (a Dask worker's stale kernel, which
        a later plan may ask for again)."""
        with self._lock:
            if taken:
                self._taken.add(key)
            kernel = self._idle.pop(key, None)
        if kernel is not None:
            self._stop(kernel, now=True)

    def release(self, kernel: PooledKernel) -> None:
        """A step is done with ``kernel``: shut it down in the background, gracefully."""
        self._stop(kernel, now=False)

    def kill(self) -> None:
        """Kill every kernel process now (Ctrl-C, a cancel): running steps end with a dead
        kernel, and steps waiting for a kernel stop waiting (:meth:`PooledKernel.wait`)."""
        with self._lock:
            self._closed = self.killed = True
            kernels = list(self.kernels)
        if self.zygote is not None:
            self.zygote.kill()
        if self.share is not None:
            self.share.close()
        for kernel in kernels:
            resolve(kernel.ready, False)
            pid = kernel.pid
            if pid is None or (kernel.stopped is not None and kernel.stopped.done()):
                continue  # not started, or shut down and reaped: its pid may be another's
            kill_kernel(pid)

    def close(self, timeout: float = 30.0) -> None:
        """Shut down every kernel (unused ones at once), wait for them, stop the loop."""
        with self._lock:
            self._closed = True
            idle = list(self._idle.values())
            self._idle.clear()
            kernels = list(self.kernels)
        for kernel in idle:
            self._stop(kernel, now=True)
        for kernel in kernels:
            self._stop(kernel, now=True)  # no-op for those already stopping
        for kernel in kernels:
            if kernel.stopped is not None:
                with contextlib.suppress(Exception):
                    kernel.stopped.result(timeout)
        if self.zygote is not None:
            self.zygote.close()
        if self.share is not None:
            self.share.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()

    # -- on the pool's loop ------------------------------------------------------------------

    def _start(self, key: str, modules: list[Module]) -> PooledKernel:
        """Create a kernel and schedule its start (caller holds the lock)."""
        kernel = PooledKernel(key, self)
        self.kernels.append(kernel)

        def begin() -> None:
            kernel.task = self._loop.create_task(self._warm(kernel, modules))
            kernel.task.add_done_callback(lambda task: settle(kernel.ready, task))

        self._loop.call_soon_threadsafe(begin)
        return kernel

    def _prepare(self, key: str) -> None:
        modules = self.modules(key)
        with self._lock:
            if (self._closed or key in self._idle or key in self._taken
                    or len(self._idle) >= self.size):
                return
            self._idle[key] = self._start(key, modules)

    def _refill_when_ready(self, kernel: PooledKernel) -> None:
        if kernel.task is None:  # its start is scheduled just before this call
            self._loop.call_soon(self._refill_when_ready, kernel)
        elif kernel.task.done():
            self._refill()
        else:
            kernel.task.add_done_callback(lambda _: self._refill())

    def _refill(self) -> None:
        if self.planner is None or self._closed:
            return
        try:
            upcoming = self.planner()
        except Exception:  # a prediction that failed costs a warm kernel, nothing more
            return
        for key in upcoming:
            if len(self._idle) >= self.size:
                break
            self._prepare(key)

    async def _warm(self, kernel: PooledKernel, modules: list[Module]) -> bool:
        """Start the kernel as nbclient would, then import ahead; True if it can be used."""
        from .imports import kernel_manager_class

        AsyncKernelManager = kernel_manager_class()
        from .kernellog import kernel_log, output_to

        manager = AsyncKernelManager(kernel_name=self.kernel_name,
                                     kernel_spec_manager=self._specs())
        kernel.manager = manager
        arguments = list(self.extra_arguments)
        # nbclient keeps IPython's history in memory for the kernels it starts; so do we
        if manager.ipykernel and not any(a.startswith("--HistoryManager.hist_file")
                                         for a in arguments):
            arguments.append("--HistoryManager.hist_file=:memory:")
        if self._forking is None:
            self._forking = asyncio.Lock()  # fair: first come, first forked
        log = None if self.logs is None else kernel_log(self.logs, kernel.key)
        async with self._forking:
            if self._closed:  # closed or killed while this start waited: start nothing
                return False
            zygote = await self._zygote(manager, kernel.key)
            if zygote is not None:
                from .forked import ForkProvisioner

                provisioner = ForkProvisioner(kernel_id=str(uuid.uuid4()), parent=manager,
                                              kernel_spec=manager.kernel_spec)
                provisioner.zygote = zygote
                provisioner.log = None if log is None else str(log)
                manager.kernel_id, manager.provisioner = provisioner.kernel_id, provisioner
            with output_to(log) as output:
                await manager.start_kernel(extra_arguments=arguments, cwd=self.workdir,
                                           env=kernel_environ(), **output)
            if zygote is not None:
                await self._spawn(kernel.key)
                if self.share is not None and self.zygote is not None:
                    self.share.after_first_fork(self.zygote)
        return await warmed(manager, modules, self.startup_timeout)

    async def _warm_zygote(self, key: str) -> None:
        """The zygote started and its imports for step ``key`` done (:meth:`warm_up`)."""
        from .imports import kernel_manager_class

        if self._forking is None:
            self._forking = asyncio.Lock()
        try:
            manager = kernel_manager_class()(kernel_name=self.kernel_name,
                                             kernel_spec_manager=self._specs())
            async with self._forking:  # before any fork asked for after it
                if not self._closed:
                    await self._zygote(manager, key, forking=False)
        except Exception:  # the step's own start says what is wrong, if anything
            _LOG.debug("warming the zygote up for step %s failed", key, exc_info=True)

    async def _zygote(self, manager: Any, key: str, forking: bool = True) -> _Member | None:
        """The zygote to fork step ``key``'s kernel from (:mod:`.zygote`), started on first
        use, once it imported what the step needs (:attr:`preload`); None if kernels cannot
        be forked (a kernel other than a plain ipykernel, a refused import). Each reason a
        kernel starts fresh instead is logged once (``run --verbose`` shows it)."""
        from .kernellog import zygote_log
        from .zygote import Zygote, interpreter_of, kernel_env, not_forkable

        shared = None
        share = self.share
        if share is not None and self.zygote is None and self.fork:
            if self._leased:  # a step leased before the share was set: it waits already
                share.hurry()
            # a follower waits (in a thread) for the zygote the run's leader here offers
            shared = await self._loop.run_in_executor(None, share.before_zygote,
                                                      manager.kernel_spec, self.workdir,
                                                      lambda: self._closed)
        with self._lock:
            if self.zygote is None and self.fork and not self._closed:
                spec = manager.kernel_spec
                why = not_forkable(spec)
                if not why:
                    log = None if self.logs is None else zygote_log(self.logs)
                    try:
                        self.zygote = Zygote(interpreter_of(spec), self.workdir,
                                             kernel_env(spec), log, shared)
                    except BaseException:  # followers stop waiting for it
                        if share is not None:
                            share.release()
                        raise
                    if share is not None:
                        share.started(self.zygote)
                else:
                    self.fork = False
                    self._fresh(key, why)
            zygote = self.zygote
        if zygote is None:
            return None
        member = await self._loop.run_in_executor(None, zygote.member_for, self._preload(key))
        if member is None:
            if self.share is not None:  # followers stop waiting for it
                self.share.release()
            self._fresh(key, zygote.why or "the zygote refused")
        elif forking:
            _LOG.debug("step %s: kernel forked from a zygote%s", key,
                       {"warm": " kept warm since an earlier run",
                        "shared": " another worker of the run shared"}.get(zygote.source, ""))
        return member

    def _specs(self) -> Any:
        """The pool's kernelspec finder (:mod:`.kernelspecs`), made once, on its loop."""
        if self._spec_manager is None:
            from .kernelspecs import RunKernelSpecs

            self._spec_manager = RunKernelSpecs()
        return self._spec_manager

    def _fresh(self, key: str, why: str) -> None:
        """Say, once per reason, that kernels start fresh rather than forked, and why."""
        if why not in self._said:
            self._said.add(why)
            _LOG.info("kernel `%s`: step %s starts a fresh kernel, not a forked one: %s",
                      self.kernel_name, key, why)

    def _preload(self, key: str) -> list[Module]:
        """What the zygote imports for step ``key`` (made once)."""
        if self.preload is None:
            return self.modules(key)
        if key not in self._preloads:
            self._preloads[key] = self.preload(key)
        return self._preloads[key]

    async def _spawn(self, key: str) -> None:
        """After the first fork: a successor zygote imports what the steps expected next
        need beyond what step ``key`` needed (:attr:`later`'s, else :attr:`planner`'s)."""
        zygote, planner = self.zygote, self.later or self.planner
        if zygote is None or zygote.successor is not None or planner is None:
            return
        try:
            upcoming = planner()
        except Exception:  # no prediction, no successor
            return
        modules = [m for k in upcoming for m in self._preload(k)]
        await self._loop.run_in_executor(None, zygote.spawn, modules)

    def _stop(self, kernel: PooledKernel, now: bool) -> None:
        with self._lock:
            if kernel.stopped is not None:
                return
            kernel.stopped = asyncio.run_coroutine_threadsafe(shut_down(kernel, now),
                                                              self._loop)
