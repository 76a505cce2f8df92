"""One run in progress: its steps submitted in dependency order to threads, ``jobs`` at a
time, each reused from the cache or executed by the executor, then recorded in the store and
told to listeners (``run.json`` rewritten atomically); a stop kills the kernels, and the
run's end, once recorded, is final.

:mod:`.runner` plans a run and opens it in the store; this module runs it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..execution.executors import Executor, RunPlan
from ..execution.kernellog import kernel_log, tidy_logs
from ..execution.stepexec import KernelCommand, StepCall, step_plan, zygote_plan
from ..pipeline.spec import PipelineSpec, Step
from ..pipeline.stepnotebook import (
    ARTIFACTS_PARAMETER,
    DRIFT_PARAMETER,
    HASHES_PARAMETER,
    PIPELINE_PARAMETER,
    STEP_PARAMETER,
)
from ..runtime._files import atomic_write
from ..runtime.checks import CHECKS_FILE
from .cache import file_fingerprints, reuse, step_key, step_strings
from .failure import describe_failure, mark_timeout
from .localmodules import module_fingerprints
from .options import RunOptions
from .records import StepRecord
from .results import RUN_FILE, Listener, RunResult, StepResult, cell_tracker
from .selection import FORCE, REUSE, RUN, SKIP
from .stop import Cancelled, Stop, kill_kernels_since
from .store import RunStore

__all__ = ["HALT_WAIT", "STOP_POLL", "PlannedRun", "RunInProgress", "record_end"]

#: Seconds between two looks of the run's main thread at a SIGTERM (:meth:`.Stop.check`)
#: while its steps run: how long a cancel may wait before the kernels are killed.
STOP_POLL = 0.1
#: Seconds a stopped run waits for its running steps to end (their kernels killed) before
#: it records its end anyway: the record is final well before a canceller's patience ends
#: (JupyterLab kills a cancelled run's processes 10 s after its SIGTERM).
HALT_WAIT = 4.0


@dataclass
class PlannedRun:
    """What a run was asked to do, checked before anything started."""

    spec: PipelineSpec
    folder: Path
    options: RunOptions
    #: Parameter values: the spec's defaults, then what the run was given.
    values: dict[str, Any]
    #: Each step's mode (:mod:`.selection`).
    modes: dict[str, str]
    #: Each step's kernel environment: Python, packages, git commit (:mod:`.cache`).
    environments: dict[str, dict[str, Any]]
    kernel: KernelCommand
    fail_on_drift: bool
    #: The top-level modules each step imports (:func:`.cache.step_imports`).
    imports: dict[str, list[str]] = field(default_factory=dict)


class RunInProgress:
    """One run in progress; the scheduler around the executor."""

    def __init__(self, plan: PlannedRun, result: RunResult, store: RunStore | None,
                 executor: Executor, jobs: int, listener: Listener | None,
                 stop: Stop | None = None) -> None:
        self.plan = plan
        self.spec = plan.spec
        self.pipeline_dir = plan.folder
        self.fail_on_drift = plan.fail_on_drift
        self.cell_timeout = plan.options.cell_limit
        self.modes = plan.modes
        self.environments = plan.environments
        self.strings = {s.name: step_strings(plan.folder / s.notebook) for s in plan.spec.steps}
        self.store = store
        self.executor = executor
        self.result = result
        self.jobs = jobs
        self.listener = listener
        #: Held to change what a step ended with, record and tell it (reentrant: a
        #: listener may look at the run), and to record the run's end.
        self.lock = threading.RLock()
        #: Set once the run's end is recorded: a step thread still busy then (hashing its
        #: files when a stop came) changes nothing after it.
        self.ended = False
        self.by_name = {s.name: r for s, r in zip(plan.spec.steps, result.steps, strict=True)}
        self.executing = self.stopping = False  # a step ran (no cache hit); Ctrl-C was hit
        #: Whether the stop is a cancel (SIGTERM): its unfinished steps say ``cancelled``.
        self.cancelled = False
        self.threads: ThreadPoolExecutor | None = None
        #: The step whose progress is still to be told, and when progress was last told.
        self.unsaid: StepResult | None = None
        self.said = 0.0
        #: The steps running now, as their threads' futures (see :meth:`halt`).
        self.running: dict[Future[None], Step] = {}
        self.began = time.time()
        #: How a SIGTERM reaches the run (held while the kernels are being closed).
        self.stop = stop or Stop("")

    def emit(self, event: str, step: StepResult) -> None:
        with self.lock:
            atomic_write(self.result.folder / RUN_FILE,
                         json.dumps(self.result.to_dict(), indent=1, default=str))
            if self.listener is not None:
                self.listener(event, self.result, step)

    def hashes(self, step: Step) -> dict[str, str]:
        return {name: self.by_name[producer].outputs[name]["sha256"]
                for name, producer in step.inputs.items()
                if name in self.by_name[producer].outputs}

    def execute(self, step: Step) -> None:
        """Run one step notebook with papermill; record what happened."""
        state = self.by_name[step.name]
        artifacts = self.result.folder / "artifacts"
        output = self.result.folder / step.notebook
        state.notebook = str(output)
        values = {n: self.result.parameters[n] for n in step.parameters}
        values[ARTIFACTS_PARAMETER] = str(artifacts)
        values[HASHES_PARAMETER] = self.hashes(step)
        values[PIPELINE_PARAMETER] = str(self.pipeline_dir.resolve())
        values[STEP_PARAMETER] = step.name
        values[DRIFT_PARAMETER] = self.fail_on_drift
        state.started = time.time()
        if self.store is not None:
            candidates = self.strings[step.name] + [
                v for n, v in self.result.parameters.items()
                if n in step.parameters and isinstance(v, str)]
            state.files = file_fingerprints(candidates, self.workdir())
            state.files.update(module_fingerprints(self.workdir(),
                                                   self.plan.imports.get(step.name, ())))
            state.cache_key = step_key(step, self.result.parameters, self.hashes(step),
                                       self.environments[step.name], self.spec.allow_pickle,
                                       self.fail_on_drift, state.files)
            if self.modes[step.name] != FORCE:
                hit = reuse(self.store, state.cache_key, step, artifacts / step.name)
                if hit is not None:
                    self.executor.skip(step.name)
                    self.end(state, "cached", status="done", cached_from=hit[0],
                             outputs=hit[1], checks=hit[2], ended=time.time())
                    return
        if self.modes[step.name] == REUSE:
            self.end(state, "failed", status="failed", ended=time.time(), error=(
                f"step `{step.name}` has no recorded result for its current code, parameters "
                "and inputs; run the whole pipeline first (--only and --from reuse what "
                "earlier runs made)"))
            return
        with self.lock:
            if self.stopping or self.ended:
                return
            state.status = "running"
            self.emit("started", state)
        self.executing = True
        log = kernel_log(self.result.folder, step.name)
        # absolute: a Dask worker works in a folder of its own
        notebook = os.path.abspath(self.pipeline_dir / step.notebook)
        call = StepCall(step=step.name, notebook=notebook,
                        output=str(output), kernel=self.plan.kernel, parameters=values,
                        cell_timeout=self.cell_timeout, kernel_log=str(log))
        try:
            self.executor.run(call, cell_tracker(state, self.pipeline_dir / step.notebook,
                                                 self.progress))
        except Exception as err:  # a failed cell, a dead kernel, a timeout: the step failed
            outcome = self.failure(step, output, err, log)
        else:
            outcome = {"status": "done", "source_cell": None,
                       "outputs": _read_outputs(artifacts / step.name, step)}
        self.end(state, outcome["status"], checks=_read_checks(artifacts / step.name),
                 ended=time.time(), **outcome)

    def end(self, state: StepResult, event: str, *, status: str, **fields: Any) -> None:
        """Give the step what it ended with, its status last (a listener or ``run.json``
        never sees it done without its outputs), then record and tell it, as one; nothing
        once the run's end is recorded, which it must not undo."""
        with self.lock:
            if self.ended:
                return
            for name, value in fields.items():
                setattr(state, name, value)
            state.status = status
            self.record(state)
            self.emit(event, state)

    def upcoming(self) -> list[str]:
        """The steps expected to start next, for the pool; none until a step really ran,
        so a run whose results all come from the cache starts no kernel."""
        if not self.executing or self.stopping:
            return []
        return [s.name for s in self.spec.steps if self.by_name[s.name].status == "pending"
                and self.modes[s.name] in (RUN, FORCE)]

    def failure(self, step: Step, output: Path, err: Exception, log: Path) -> dict[str, Any]:
        """What a step that raised ``err`` ended with: its error and the source notebook's
        cell it failed in; a step a stop ended is ``cancelled`` (a cancel), or interrupted."""
        if self.stopping:
            return {"status": "cancelled" if self.cancelled else "failed",
                    "error": None if self.cancelled else (
                        f"step `{step.name}` was interrupted (see {output})")}
        if self.cell_timeout is not None:
            mark_timeout(output, self.cell_timeout)
        error, cell = describe_failure(err, step, output, self.cell_timeout, self.spec.source,
                                       log)
        return {"status": "failed", "error": error, "error_cell": cell, "source_cell": cell}

    def progress(self, state: StepResult | None = None) -> None:
        """Tell listeners of a step's progress (``state``) at most once a second: now, or at
        the main thread's next look (``state`` None), so that the cell a step then spends
        minutes in is told too, not only the quick cells before it."""
        if state is None and (self.unsaid is None or time.monotonic() - self.said < 1.0):
            return  # the main thread's look, with nothing to tell: no wait for a step's end
        with self.lock:  # step threads and the main thread both tell
            if state is not None:
                self.unsaid = state
            state, now = self.unsaid, time.monotonic()
            if state is not None and now - self.said >= 1.0:
                self.said, self.unsaid = now, None
                if state.status == "running":  # once it has ended, its end was told
                    self.emit("cell", state)

    def record(self, state: StepResult) -> None:
        """Write a finished step to the store, in one transaction."""
        if self.store is None:
            return
        step = self.spec.step(state.name)
        inputs = {name: {"step": producer, "sha256": self.by_name[producer].outputs.get(
            name, {}).get("sha256", "")} for name, producer in step.inputs.items()}
        used = {n: self.result.parameters.get(n) for n in step.parameters}
        record = StepRecord(
            self.result.run_id, state.name, status=state.status, started=state.started,
            ended=state.ended, cache_key=state.cache_key, cached_from=state.cached_from,
            notebook=state.notebook, error=state.error, checks=state.checks,
            files=state.files, inputs=inputs, code_sha256=step.code_sha256, parameters=used,
            outputs=state.outputs)
        with self.lock:
            self.store.record_step(record)

    def workdir(self) -> Path:
        return Path(self.plan.kernel.workdir)

    def schedule(self) -> None:
        """Start every step whose upstream steps are done; stop starting on a failure."""
        for step in self.spec.steps:
            state = self.by_name[step.name]
            if self.modes[step.name] == SKIP and state.status != "done":
                state.status = "skipped"
                self.record(state)
        waiting = [s for s in self.spec.steps if self.by_name[s.name].status == "pending"]
        self.executor.start(RunPlan(
            self.plan.kernel, self.jobs, self.upcoming,
            partial(step_plan, self.spec, self.pipeline_dir),
            preload=partial(zygote_plan, self.spec, self.pipeline_dir),
            logs=self.result.folder))
        self.threads = ThreadPoolExecutor(max_workers=self.jobs,
                                          thread_name_prefix="mlops-step")
        try:
            self.dispatch(self.threads, waiting)
        except BaseException as err:  # Ctrl-C, SIGTERM: kill the kernels, so steps end now
            self.stopping, self.cancelled = True, isinstance(err, Cancelled)
            self.halt(time.monotonic() + HALT_WAIT)
            raise
        for step in waiting:
            state = self.by_name[step.name]
            state.status = "not run"
            self.record(state)
            self.emit("not run", state)

    def close(self) -> None:
        """Once the run's end is recorded: wait for its steps' threads (a stopped run's
        kernels killed until they end), shut every kernel down, keep the logs that say
        something. A second call does nothing."""
        threads, self.threads = self.threads, None
        if threads is None:
            return
        if self.stopping:
            self.halt(None)
        threads.shutdown(wait=True)
        self.executor.close()  # every kernel it started, used or not, is shut down
        tidy_logs(self.result.folder)  # the kernels have ended: keep logs with something

    def halt(self, until: float | None) -> None:
        """Kill the kernels, again until every running step has ended or the monotonic time
        ``until`` (None: no limit) has come: a kernel that was starting as the stop came is
        out of the executor's reach at first (its pid not known yet), so each round also
        kills the kernels this process started during the run."""
        self.executor.kill()
        while True:
            _, pending = wait(self.running, timeout=0.2)
            if not pending or (until is not None and time.monotonic() > until):
                return
            self.executor.kill()
            kill_kernels_since(self.began)

    def dispatch(self, threads: ThreadPoolExecutor, waiting: list[Step]) -> None:
        """Submit each waiting step once its upstream steps are done, ``jobs`` at a time;
        between, look for a SIGTERM (:meth:`.Stop.check` raises :class:`Cancelled`).

        An upstream step is done once its thread has returned, not when its status says so:
        the status is set in that thread before its outputs are recorded, and a step
        submitted in between would key its cache on inputs it cannot see yet."""
        running = self.running
        while waiting or running:
            self.stop.check()
            if not any(r.status == "failed" for r in self.result.steps):
                busy = {s.name for s in running.values()}
                for step in list(waiting):
                    if len(running) >= self.jobs:
                        break
                    if all(self.by_name[a].status == "done" and a not in busy
                           for a in step.after):
                        waiting.remove(step)
                        running[threads.submit(self.execute, step)] = step
            if not running:
                break
            done, _ = wait(running, timeout=STOP_POLL, return_when=FIRST_COMPLETED)
            self.progress()
            for future in done:
                running.pop(future)
                future.result()


def _read_checks(folder: Path) -> list[dict[str, Any]]:
    path = folder / CHECKS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    except ValueError:
        return []


def _read_outputs(folder: Path, step: Step) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for output in step.outputs:
        manifest = folder / f"{output.name}.json"
        if manifest.is_file():
            found[output.name] = json.loads(manifest.read_text(encoding="utf-8"))
    return found


def record_end(runner: RunInProgress, store: RunStore, stopped: BaseException | None) -> None:
    """Say in the store, then in ``run.json``, how the run ended. Once it has, no step says
    it runs: a stopped run's step still running (its kernel killed, its thread not yet
    back) ended with it, and a cancelled run's steps that had not finished are
    ``cancelled``, each in the store as in ``run.json``."""
    with runner.lock:  # a step thread still busy ends nothing after this
        runner.ended = True
        result = runner.result
        cancelled, now = isinstance(stopped, Cancelled), time.time()
        for state in result.steps:
            if stopped is not None and (state.status == "running"
                                        or (cancelled and state.status == "pending")):
                state.status = "cancelled" if cancelled else "failed"
                state.error = None if cancelled else f"step `{state.name}` was interrupted"
                state.ended = now if state.started is not None else None
                runner.record(state)
        failed = [s for s in result.steps if s.status == "failed"]
        unfinished = bool(failed) or any(s.status not in ("done", "skipped") for s in result.steps)
        result.status = "failed" if unfinished else "succeeded"
        # a run stopped by something other than a step (the store, an interrupt) says why
        result.error = failed[0].error if failed else (
            f"{type(stopped).__name__}: {stopped}".rstrip(": ") if stopped else None)
        if cancelled and unfinished:  # not one that had just finished
            result.status = "cancelled"
            result.error = (f"{stopped}; resume it with "
                            f"`{store.resume_command(result.run_id, runner.pipeline_dir)}`")
        result.ended = time.time()
        store.finish_run(result.run_id, result.status, result.error)
        runner.emit("finished", result.steps[-1])
