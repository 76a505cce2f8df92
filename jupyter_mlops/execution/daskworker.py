"""What the Dask executor (:mod:`.daskexec`) runs on a cluster's workers: each worker's kernel
pools, one per run and kernel, and the tasks that run a step, warm a worker up, start a
kernel ahead, drop one, and kill or shut down a run's kernels.

A worker is a process of someone else's (the cluster's): what is kept here is per run (its
token), so runs sharing a cluster never touch each other's kernels, and a run that ended or
was stopped here starts nothing more, even from a task that comes late.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from typing import Any

from .executors import ExecutorStopped
from .pooledkernel import kill_kernel
from .stepexec import KernelCommand, Module, StepCall, close_thread_loop, execute_step

#: How many kernels a worker starts ahead, for the steps expected after the one it runs: a
#: chain of short steps then finds each kernel ready, as the local pool's do (with one,
#: each step of churn's chain waited 0.1-0.2 s for the rest of its kernel's start).
AHEAD = 2
#: A step notebook's imports ahead: its kernel's, and its zygote's.
Plans = tuple[list[Module], list[Module]]
#: A worker's pool of one run (its token), for one kernel (kernel, working directory, kernel
#: arguments): a run's end or stop closes its own kernels, never another run's on the cluster.
PoolKey = tuple[str, KernelCommand]

# On a worker: a kernel pool per run and kernel, and what each step notebook's kernel
# imports ahead.
_POOLS: dict[PoolKey, Any] = {}
#: Per step notebook: what its kernel imports ahead, and what the zygote imports before it
#: forks that kernel (the same, then what saving the step's outputs needs).
_PLANS: dict[str, Plans] = {}
_ASKED: dict[PoolKey, set[str]] = {}  # step notebooks prepared for
#: Kernels papermill started itself for a run's steps (the pool's could not be used), by run
#: token: a stop kills them too.
_FRESH: dict[str, set[int]] = {}
#: Runs stopped, and runs whose kernels were shut down, here: a task of theirs that comes
#: late (sent before the stop or the end) starts nothing.
_ENDED: set[str] = set()
_LOCK = threading.Lock()
_IMPORTING = threading.Event()  # set once a warm-up on this worker began importing papermill


def run_step(token: str, call: StepCall, upcoming: list[str], plans: dict[str, Plans],
             later: list[str] | None = None) -> str:
    """On a worker: run the step in the kernel run ``token`` prepared for it (or a fresh
    one) while the kernels of ``upcoming`` start; return this worker's address. ``later``:
    every step still expected, whose imports a successor zygote makes once this worker
    forked its first kernel (else those of ``upcoming``)."""
    from distributed import get_worker

    key = (token, call.kernel)
    stale: set[str] = set()
    with _LOCK:
        _PLANS.update(plans)
        pool = _pool(key)
        if pool is not None:
            pool.planner = lambda: list(upcoming)
            if later is not None:
                pool.later = lambda: list(later)
            stale = _asked(key, call.notebook, set(upcoming))
    if pool is None or pool.killed:  # sent as the run was stopped: start no kernel
        raise ExecutorStopped(f"step `{call.step}` did not start: the run was stopped")
    for notebook in stale:
        pool.discard(notebook, taken=False)
    # the pool on a worker knows steps by their notebooks
    lease = pool.lease(call.notebook)
    started: list[int] = []

    def fresh(pid: int) -> None:  # papermill started the kernel: a stop must reach it
        with _LOCK:
            stopped = token in _ENDED
            if not stopped:
                started.append(pid)
                _FRESH.setdefault(token, set()).add(pid)
        if stopped:
            kill_kernel(pid)

    try:
        execute_step(call, kernel_manager=None if lease is None else lease.wait,
                     on_kernel=fresh)
    finally:
        with _LOCK:  # ended and shut down: its pid may soon be another process's
            _FRESH.get(token, set()).difference_update(started)
        if lease is not None:
            lease.release()
        close_thread_loop()
    return get_worker().address


def _asked(key: PoolKey, running: str, next_ones: set[str]) -> set[str]:
    """On a worker, the lock held: note that its pool now starts kernels for ``next_ones``;
    the notebooks it started one for before, other than ``running``'s and those still
    expected, whose kernels are to be dropped (each would hold one of the pool's places)."""
    stale = _ASKED.setdefault(key, set()) - {running} - next_ones
    _ASKED[key] = set(next_ones)
    return stale


def _pool(key: PoolKey) -> Any:
    """On a worker, the lock held: its pool of kernels for ``key``, made on first use; None
    once the run was stopped or ended here."""
    from .kernelpool import KernelPool

    if key[0] in _ENDED:
        return None
    pool = _POOLS.get(key)
    if pool is None:
        pool = _POOLS[key] = KernelPool(key[1], AHEAD, plan=lambda n: _PLANS.get(n, ([], []))[0],
                                        preload=lambda n: _PLANS.get(n, ([], []))[1])
    return pool


def warm_up(key: PoolKey, notebook: str, plans: Plans, role: str | None = None) -> None:
    """On a worker: start the zygote of its pool with ``notebook``'s imports, in the pool's
    own thread, and import papermill in another (a worker's first step would import it on
    its own time); returns at once. ``role``: "lead" or "follow" where the run's workers on
    this machine share one zygote's imports (:mod:`.hostshare`)."""
    with _LOCK:
        _PLANS[notebook] = plans  # this run's: a worker warmed wider than the step needs
        pool = _pool(key)
        importing = "papermill" not in sys.modules and not _IMPORTING.is_set()
        _IMPORTING.set()
        # a pool whose zygote a step started first has nothing to wait for, nor to name
        if (pool is not None and role in ("lead", "follow") and pool.share is None
                and pool.zygote is None and pool.fork):
            from .hostshare import Share

            pool.share = Share(key[0], role == "lead")
    if pool is not None:
        pool.warm_up(notebook)
    if importing:
        threading.Thread(target=_import_papermill, daemon=True, name="mlops-warm-up").start()


def prepare(key: PoolKey, notebook: str, plans: Plans) -> None:
    """On a worker: start the kernel of ``notebook``'s step (dropping one started for
    another step); returns at once."""
    with _LOCK:
        _PLANS[notebook] = plans
        pool = _pool(key)
        if pool is None:
            return
        stale = _asked(key, notebook, {notebook})
    for other in stale:
        pool.discard(other, taken=False)
    pool.prepare(notebook)


def _import_papermill() -> None:
    from .imports import papermill_and_engine

    with contextlib.suppress(Exception):  # the step imports it again and says what failed
        papermill_and_engine()


def discard(key: PoolKey, notebook: str) -> None:
    """On a worker: drop the kernel started ahead for ``notebook`` (its step was cached)."""
    with _LOCK:
        pool = _POOLS.get(key)
        _ASKED.get(key, set()).discard(notebook)
    if pool is not None:
        pool.discard(notebook)


def kill_run(token: str) -> None:
    """On a worker: kill every kernel run ``token`` started here (:meth:`DaskExecutor.kill`);
    its pools are closed with the run (:func:`close_run`)."""
    with _LOCK:
        _ENDED.add(token)
        pools = [pool for key, pool in _POOLS.items() if key[0] == token]
        fresh = list(_FRESH.get(token, ()))
    for pool in pools:
        pool.kill()
    for pid in fresh:
        kill_kernel(pid)


def close_run(token: str) -> None:
    """On a worker: shut down every kernel run ``token`` started here."""
    with _LOCK:
        _ENDED.add(token)
        # a step the run stopped may still run here (Dask cannot interrupt a task): the
        # kernel papermill started for it ends now
        fresh = _FRESH.pop(token, set())
        keys = [key for key in _POOLS if key[0] == token]
        pools = [_POOLS.pop(key) for key in keys]
        for key in keys:
            _ASKED.pop(key, None)
        if not _POOLS:
            _PLANS.clear()
    for pid in fresh:
        kill_kernel(pid)
    for pool in pools:
        pool.close()
