"""The local executor: each step in a kernel of this machine, started ahead in a pool."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from .executors import CellListener, Executor, ExecutorSettings, ExecutorStopped, RunPlan
from .stepexec import StepCall, close_thread_loop, execute_step

if TYPE_CHECKING:
    from .kernelpool import KernelPool


class LocalExecutor(Executor):
    """Steps run here; with ``kernel_pool`` (the default), a step's kernel is started and
    warmed before the step is due (:mod:`.kernelpool`), else when it starts."""

    name = "local"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.pooling = settings.kernel_pool
        self.pool: KernelPool | None = None
        self.plan: RunPlan | None = None
        self._opening = threading.Lock()
        self.killed = False

    @classmethod
    def open(cls, settings: ExecutorSettings) -> LocalExecutor:
        """Nothing to connect to."""
        return cls(settings)

    def start(self, plan: RunPlan) -> None:
        """Keep the plan; the pool starts with the first step that runs (a run whose steps
        are all reused starts none, nor its thread)."""
        self.plan = plan

    def _pool(self) -> KernelPool | None:
        """The pool, started on first use: one kernel more than run at once waits, so a
        chain of short steps warms two ahead."""
        with self._opening:
            plan = self.plan
            if self.pool is None and self.pooling and plan is not None and not self.killed:
                from .kernelpool import KernelPool

                self.pool = KernelPool(plan.kernel, plan.parallelism + 1, plan.upcoming,
                                       plan.plan, preload=plan.preload, logs=plan.logs)
            return self.pool

    def run(self, call: StepCall, on_cell: CellListener | None) -> None:
        """Run the step in the kernel the pool holds for it, or in a new one; none once
        killed (a kernel started then would outlive the stop's kills)."""
        if self.killed:
            raise ExecutorStopped(f"step `{call.step}` did not start: the run was stopped")
        pool = self._pool()
        lease = pool.lease(call.step) if pool is not None else None
        if lease is None and self.killed:  # the pool closed for the stop meanwhile
            raise ExecutorStopped(f"step `{call.step}` did not start: the run was stopped")
        try:
            execute_step(call, on_cell=on_cell,
                         kernel_manager=None if lease is None else lease.wait)
        finally:
            if lease is not None:
                lease.release()
            close_thread_loop()

    def skip(self, step: str) -> None:
        """Drop the kernel started ahead for ``step``."""
        if self.pool is not None:
            self.pool.discard(step)

    def kill(self) -> None:
        """Kill the kernels, so running steps end now; start none from now on."""
        with self._opening:
            self.killed = True
            pool = self.pool
        if pool is not None:
            pool.kill()

    def close(self) -> None:
        """Shut down every kernel the pool started, used or not."""
        with self._opening:
            pool, self.pool, self.plan = self.pool, None, None
        if pool is not None:
            pool.close()
