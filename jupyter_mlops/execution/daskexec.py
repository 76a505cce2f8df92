"""The Dask executor: each step's notebook runs on a worker of a Dask cluster.

The runner keeps scheduling, caching and recording in this process; only the papermill call
moves to the cluster, so results and run records are the same as with the local executor.
Workers must see the pipeline and run folders at the same paths (one machine, or a shared
file system).

As the local executor does (:mod:`.kernelpool`), a worker starts the kernel of the step
expected after the one it runs while that one runs, and of one more step that waits for it
(a chain's next two), importing ahead what each imports first; those steps are then sent to
that worker, and no other worker starts a kernel for them. When the first step that runs is
sent, every worker starts its zygote (:meth:`.kernelpool.KernelPool.warm_up`): a worker
reached first by a later branch then forks its kernel at once instead of importing pandas
and scikit-learn on the branch's time (the workers on the first step's machine fork theirs
from that step's worker's zygote, :mod:`.hostshare`, rather than importing beside it);
and while a step runs, the other workers start the kernels of the other steps waiting for
it (a second branch), which are then sent there. A worker's zygote imports what saving a
step's outputs needs, as the local runner's does. The kernels a worker holds are shut down
when the run ends (:meth:`DaskExecutor.close`), or with the worker. A stop (Ctrl-C, a
cancel) kills the run's kernels on the workers, so its running steps end at once, as local
ones do.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import Counter
from concurrent.futures import CancelledError
from typing import Any

from ..errors import MlopsError, OptionError
from . import daskworker
from .daskplan import descendants, plans_of, spec_of, upcoming_after, warm_plans
from .daskworker import AHEAD, Plans, PoolKey
from .executors import CellListener, Executor, ExecutorSettings, ExecutorStopped, RunPlan
from .stepexec import KernelCommand, StepCall

EXTRA_HINT = "pip install 'jupyter-mlops[dask]'"

class DaskExecutor(Executor):
    """A connection to a Dask scheduler that runs step notebooks on its workers."""

    name = "dask"

    def __init__(self, address: str, client: Any = None) -> None:
        """Connect to the scheduler at ``address`` (or use ``client``, a distributed
        ``Client`` already connected)."""
        self.client = client if client is not None else _connect(address)
        #: The worker that prepares a kernel for each step notebook.
        self.prepared: dict[str, str] = {}
        #: The step notebooks whose kernels the steps running start (their workers known when
        #: they come back).
        self.preparing: set[str] = set()
        #: The step notebooks whose results came from the cache (:meth:`skip`).
        self.skipped: set[str] = set()
        self.sent: set[str] = set()
        #: The workers' warm-ups, kept so Dask does not cancel them (:meth:`_warm_workers`).
        self.warming: list[Any] = []
        #: The workers a step was sent to and has not come back from.
        self.busy: Counter[str] = Counter()
        #: The steps sent and not come back, which a stop cancels.
        self.running: set[Any] = set()
        #: This run's name for its pools on the workers.
        self.token = uuid.uuid4().hex
        self.kernel: KernelCommand | None = None
        self.plan: RunPlan | None = None
        #: What each step notebook's kernel and zygote import ahead (:meth:`_plans_of`).
        self.plans: dict[str, Plans] = {}
        self._lock = threading.Lock()
        self.closed = self.killed = False

    @classmethod
    def open(cls, settings: ExecutorSettings) -> DaskExecutor:
        """Connect to the scheduler at ``settings.address``."""
        if not settings.address:
            raise OptionError("the Dask executor needs the address of a scheduler, e.g. "
                              "tcp://127.0.0.1:8786", option="scheduler")
        return cls(settings.address)

    def parallelism(self) -> int | None:
        """As many steps at once as the cluster has workers."""
        return len(self._workers()) or None

    def start(self, plan: RunPlan) -> None:
        """Keep the plan: which steps the runner still expects to run (a step it reused from
        the cache gets no kernel started ahead)."""
        self.plan = plan

    def _workers(self) -> list[str]:
        """The workers' addresses, sorted (``nthreads``: some versions of ``scheduler_info``
        list five at most)."""
        return sorted(self.client.nthreads())

    def run(self, call: StepCall, on_cell: CellListener | None = None) -> None:
        """Run :func:`execute_step` on a worker and wait; its exception comes back as is. A
        callback cannot cross to a worker: ``on_cell`` is not told of cells."""
        notebook, key = call.notebook, (self.token, call.kernel)
        with self._lock:
            if self.killed:
                raise ExecutorStopped(f"step `{call.step}` did not start: the run was stopped")
            self.kernel = call.kernel
            first = not self.sent
            self.sent.add(notebook)
            worker = self.prepared.pop(notebook, None)
            if worker in self.busy:  # its kernel there waits: a fresh one elsewhere now
                worker = None
            if worker is not None:  # taken now: no step sent meanwhile takes it
                self.busy[worker] += 1
            expected = None if self.plan is None else set(self.plan.upcoming())
            upcoming, waiting, after_it = upcoming_after(notebook, self.sent, expected)
        ahead: list[str] = []
        address: str | None = None  # the worker that ran it, once it returned
        try:
            plans = {notebook: self._plans_of(notebook)}
            workers = self._listed()
            if worker is None:
                worker = self._idle(workers)
            if first:
                self._warm_workers(workers, key, notebook, plans[notebook], worker, expected)
            if worker is not None:  # the other steps that wait for this one start when it ends
                self._prepare_elsewhere(workers, key, upcoming[1:waiting])
            ahead = self._ahead(worker, upcoming, after_it)
            # the worker's successor zygote imports for every step still expected, as the
            # local pool's does (a later branch's model would otherwise wait for skops)
            plans.update({n: self._plans_of(n) for n in upcoming})
            address = self._run_on(worker, call, ahead, plans, upcoming)
        finally:
            # one look: the worker is free and holds these kernels at once (a step sent
            # between two looks could take the worker, or start a second kernel elsewhere)
            with self._lock:
                if worker is not None:
                    self.busy[worker] -= 1
                    if self.busy[worker] <= 0:
                        del self.busy[worker]
                self.preparing.difference_update(ahead)
                for later in ahead if address is not None else ():
                    # a step sent or reused meanwhile: its kernel there is dropped with that
                    # worker's next step, or the run's end
                    if later not in self.sent and later not in self.skipped:
                        self.prepared.setdefault(later, address)

    def _idle(self, workers: list[str]) -> str | None:
        """A worker not busy, taken: one holding no kernel for another step first."""
        with self._lock:
            idle = [w for w in workers if w not in self.busy]
            worker = next((w for w in idle if w not in self.prepared.values()),
                          idle[0] if idle else None)
            if worker is not None:
                self.busy[worker] += 1
        return worker

    def _plans_of(self, notebook: str) -> Plans:
        """:func:`.daskplan.plans_of` a step notebook, worked out once a run."""
        plans = self.plans.get(notebook)
        if plans is None:
            plans = self.plans[notebook] = plans_of(notebook)
        return plans

    def _run_on(self, worker: str | None, call: StepCall, ahead: list[str],
                plans: dict[str, Plans], later: list[str]) -> str:
        """Send the step to ``worker`` (None: where Dask chooses) and wait: the address of
        the worker it ran on."""
        # pure=False: the same step with the same arguments may run again (a re-run)
        # to the worker that has its kernel ready, unless that one is busy
        where = {"workers": [worker], "allow_other_workers": True} if worker else {}
        future = self.client.submit(daskworker.run_step, self.token, call, ahead, plans,
                                    later, pure=False, **where)
        with self._lock:
            self.running.add(future)
        try:
            return str(future.result())
        except (CancelledError, asyncio.CancelledError):  # older distributed: asyncio's
            if self.killed:
                raise ExecutorStopped(f"step `{call.step}` was stopped") from None
            raise  # cancelled by the cluster (a restart, a lost connection): its reason
        finally:
            with self._lock:
                self.running.discard(future)

    def _ahead(self, worker: str | None, upcoming: list[str], after_it: set[str]
               ) -> list[str]:
        """The steps whose kernels the worker running a step starts meanwhile: the next one
        expected, and one more that waits for both (a chain), unless another step running
        or another worker starts theirs, or it was sent or reused meanwhile. A kernel it
        holds for a step left out, it drops (:func:`.daskworker.run_step`): no longer noted
        here either. Noted as being started."""
        with self._lock:
            gone = self.sent | self.skipped
            held = [n for n in upcoming if worker is not None
                    and self.prepared.get(n) == worker and n not in gone]
            free = [n for n in upcoming if n not in self.preparing and n not in gone
                    and n not in self.prepared]
            chosen = [n for n in upcoming if n in held or n in free]
            if chosen:
                chain = after_it & descendants(chosen[0])
                chosen = chosen[:1] + [n for n in chosen[1:] if n in chain][:AHEAD - 1]
            for dropped in set(held) - set(chosen):
                self.prepared.pop(dropped, None)
            self.preparing.update(chosen)
        return chosen

    def _listed(self) -> list[str]:
        """The workers, or none when the scheduler cannot say (steps then go where Dask
        sends them, their kernels started with them)."""
        try:
            return self._workers()
        except Exception:
            return []

    def _warm_workers(self, workers: list[str], key: PoolKey, notebook: str,
                      plans: Plans, first_on: str | None, expected: set[str] | None) -> None:
        """Have every worker start its zygote with the imports of ``notebook`` (the first
        step that runs, on ``first_on``); the others, which have time until a later step
        reaches them (no other of the steps ``expected`` could start now), also what loading
        and saving the run's artifacts imports (:func:`.daskplan.warm_plans`), and those on
        ``first_on``'s machine fork their zygotes from its (:mod:`.hostshare`) rather than
        importing beside it. Each task returns at once, leaving the worker free for a step."""
        wider, alone = plans, False  # a step sent where Dask chooses: any worker may run it
        if first_on is not None and any(w != first_on for w in workers):
            wider, alone = warm_plans(notebook, expected)
        host = _host(first_on) if alone and first_on is not None else None
        followers = {w for w in workers if w != first_on and host and _host(w) == host}
        roles = {w: "follow" for w in followers}
        if followers and first_on is not None:
            roles[first_on] = "lead"
        started = [self.client.submit(daskworker.warm_up, key, notebook,
                                      plans if w == first_on else wider, roles.get(w),
                                      pure=False, workers=[w], allow_other_workers=False)
                   for w in workers]
        with self._lock:
            self.warming += started

    def _prepare_elsewhere(self, workers: list[str], key: PoolKey, later: list[str]) -> None:
        """While steps run and start the next ones' kernels, have each other worker start
        the kernel of one more step expected soon (a second branch), if none is started for
        it yet; that step is then sent there."""
        with self._lock:
            taken = set(self.busy) | set(self.prepared.values())
            free = [w for w in workers if w not in taken]
            chosen = [n for n in later if n not in self.prepared and n not in self.preparing]
            pairs = list(zip(free, chosen, strict=False))
            self.prepared.update({n: w for w, n in pairs})
        started = [self.client.submit(daskworker.prepare, key, n, self._plans_of(n), pure=False,
                                      workers=[w], allow_other_workers=False)
                   for w, n in pairs]
        with self._lock:
            self.warming += started

    def skip(self, step: str) -> None:
        """Drop the kernel a worker started ahead for ``step``, whose result came from the
        cache (or keep one from being noted, if a step running starts it): that worker then
        counts as free for the steps still to run."""
        with self._lock:
            kernel, known = self.kernel, [*self.prepared, *self.preparing, *self.sent]
        found = spec_of(known[0]) if known else None
        if found is None or kernel is None:
            return
        spec, folder = found
        notebook = next((str(folder / s.notebook) for s in spec.steps if s.name == step), None)
        if notebook is None:
            return
        with self._lock:
            self.skipped.add(notebook)
            worker = self.prepared.pop(notebook, None)
        if worker is not None:
            dropped = self.client.submit(daskworker.discard, (self.token, kernel), notebook,
                                         pure=False, workers=[worker], allow_other_workers=False)
            with self._lock:
                self.warming.append(dropped)

    def kill(self) -> None:
        """Stop the run's steps now (Ctrl-C, a cancel): each worker kills the kernels this
        run started there, so a running step ends at once; no step is sent from now on."""
        with self._lock:
            self.killed = True
            running = list(self.running)
        with contextlib.suppress(Exception):
            self.client.run(daskworker.kill_run, self.token, wait=False)
        with contextlib.suppress(Exception):  # its thread stops waiting for the worker
            self.client.cancel(running, force=True)

    def close(self) -> None:
        """Shut down the kernels the workers started ahead for this run, and disconnect
        from the scheduler (the cluster keeps running, and other runs' kernels on it)."""
        if self.closed:
            return
        self.closed = True
        try:
            # a warm-up still queued would start a zygote after its pool was closed
            from distributed import wait

            wait(self.warming, timeout=10)
        except Exception:  # one that is not done by now (its worker gone) is cancelled
            pass
        with contextlib.suppress(Exception):
            self.client.cancel([f for f in self.warming if not f.done()])
        try:
            self.client.run(daskworker.close_run, self.token)
        except Exception:  # a worker that is gone has no kernels left to close
            pass
        self.client.close()


#: The schemes of workers that are processes of their own (Dask's network transports).
_NETWORK = ("tcp", "tls", "ucx", "ws", "wss")


def _host(address: str) -> str | None:
    """The machine part of a worker's address (``tcp://10.0.0.5:4321``: ``10.0.0.5``); None
    for workers in one process (``inproc://``), which share one kernel pool already."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(address)
        return parts.hostname if parts.scheme in _NETWORK else None
    except ValueError:
        return None


def _connect(address: str) -> Any:
    """A distributed ``Client`` connected to the scheduler at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise MlopsError(f"the Dask executor needs Dask distributed, which is not "
                         f"installed; {EXTRA_HINT}") from None
    try:
        return Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as err:  # ValueError: a malformed address
        raise OptionError(f"cannot reach the Dask scheduler at {address} ({err}); check "
                          "the address (e.g. tcp://127.0.0.1:8786)", option="scheduler") from None
