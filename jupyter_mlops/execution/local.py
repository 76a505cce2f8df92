"""The local executor: each step in a kernel of this machine, started ahead in a pool."""

from __future__ import annotations

from .executors import CellListener, Executor, ExecutorSettings, ExecutorStopped, RunPlan
from .kernelpool import KernelPool
from .stepexec import StepCall, close_thread_loop, execute_step


class LocalExecutor(Executor):
    """Steps run here; with ``kernel_pool`` (the default), a step's kernel is started and
    warmed before the step is due (:mod:`.kernelpool`), else when it starts."""

    name = "local"

    def __init__(self, settings: ExecutorSettings) -> None:
        self.pooling = settings.kernel_pool
        self.pool: KernelPool | None = None
        self.killed = False

    @classmethod
    def open(cls, settings: ExecutorSettings) -> LocalExecutor:
        """Nothing to connect to."""
        return cls(settings)

    def start(self, plan: RunPlan) -> None:
        """Start the pool: one kernel more than run at once waits, so a chain of short steps
        warms two ahead."""
        if self.pooling:
            self.pool = KernelPool(plan.kernel, plan.parallelism + 1, plan.upcoming, plan.plan,
                                   preload=plan.preload, logs=plan.logs)

    def run(self, call: StepCall, on_cell: CellListener | None) -> None:
        """Run the step in the kernel the pool holds for it, or in a new one; none once
        killed (a kernel started then would outlive the stop's kills)."""
        if self.killed:
            raise ExecutorStopped(f"step `{call.step}` did not start: the run was stopped")
        lease = self.pool.lease(call.step) if self.pool is not None else None
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
        self.killed = True
        if self.pool is not None:
            self.pool.kill()

    def close(self) -> None:
        """Shut down every kernel the pool started, used or not."""
        pool, self.pool = self.pool, None
        if pool is not None:
            pool.close()
