"""The runner: executes a pipeline's steps with papermill, in dependency order, in parallel.

Each run gets a folder ``RUNS/RUN_ID/`` with the executed step notebooks (``steps/``), the
artifacts each step saved (``artifacts/STEP/``) and ``run.json``, which is rewritten
atomically whenever a step changes state, so anyone can follow a run by reading it. Where
the step notebooks execute is an executor's business (:mod:`..execution.executors`), and
where a finished run is mirrored a mirror's (:mod:`.mirrors`): the runner imports neither.

While a run runs, a daemon thread renews its heartbeat in the store (:class:`.store.Heartbeat`),
and a SIGTERM (``kill``, a cancel from JupyterLab, a process manager stopping the machine)
cancels it cleanly: its kernels are stopped and the run is recorded ``cancelled`` in the store
and in ``run.json`` before the process exits (:mod:`.stop`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import MlopsError, OptionError, SpecError
from ..execution.executors import Executor, ExecutorSettings, RunPlan, open_executor
from ..execution.kernellog import kernel_log, tidy_logs
from ..execution.stepexec import KernelCommand, StepCall, check_kernel, step_plan, zygote_plan
from ..pipeline.spec import SPEC_FILE, PipelineSpec, Step
from ..pipeline.stepnotebook import (
    ARTIFACTS_PARAMETER,
    DRIFT_PARAMETER,
    HASHES_PARAMETER,
    PIPELINE_PARAMETER,
    STEP_PARAMETER,
)
from ..runtime._files import atomic_write, sha256_file
from ..runtime.checks import CHECKS_FILE
from .cache import (
    environments as environments_of,
)
from .cache import (
    file_fingerprints,
    reuse,
    step_imports,
    step_key,
    step_strings,
)
from .failure import describe_failure, mark_timeout
from .heartbeat import Heartbeat
from .mirrors import Mirror, open_mirror
from .options import RunOptions
from .records import StepRecord
from .results import RUN_FILE, Listener, RunResult, StepResult, cell_tracker, new_run_id
from .selection import FORCE, REUSE, RUN, SKIP, select
from .stop import Cancelled, Stop, kill_kernels_since, stop_on_sigterm
from .store import RunStore, default_store

__all__ = ["Cancelled", "run_pipeline", "stop_on_sigterm"]

#: Seconds between two looks of the run's main thread at a SIGTERM (:meth:`.Stop.check`)
#: while its steps run: how long a cancel may wait before the kernels are killed.
STOP_POLL = 0.1
#: Seconds a stopped run waits for its running steps to end (their kernels killed) before
#: it records its end anyway: the record is final well before a canceller's patience ends
#: (JupyterLab kills a cancelled run's processes 10 s after its SIGTERM).
HALT_WAIT = 4.0


@dataclass
class _Plan:
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


class _Run:
    """One run in progress; the scheduler around the executor."""

    def __init__(self, plan: _Plan, result: RunResult, store: RunStore | None,
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
            ended = self.failure(step, output, err, log)
        else:
            ended = {"status": "done", "source_cell": None,
                     "outputs": _read_outputs(artifacts / step.name, step)}
        self.end(state, ended["status"], checks=_read_checks(artifacts / step.name),
                 ended=time.time(), **ended)

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


def run_pipeline(pipeline_dir: str | Path, parameters: dict[str, Any] | None = None, *,
                 listener: Listener | None = None, options: RunOptions | None = None,
                 **settings: Any) -> RunResult:
    """Run the pipeline in ``pipeline_dir``; return the run's result (failed or not).

    How to run it is ``options`` (:class:`.RunOptions`), or the same settings as keywords
    (``runs_dir=``, ``jobs=``, ``fail_on_drift=``, ...); ``parameters`` are typed values
    added to them. Every run is recorded in the run store; a step whose content key is
    there already reuses its outputs unless forced. ``listener`` hears of every change of
    state. User errors (a bad folder, parameter, step, option or kernel) raise
    :class:`MlopsError` before anything starts.
    """
    if options is None:
        options = RunOptions.of(**settings)
    elif settings:
        raise TypeError("give run_pipeline options or keyword settings, not both")
    if parameters:
        options = replace(options, parameters={**options.parameters, **parameters})
    # a SIGTERM while the run is planned waits for its record, which then says cancelled
    with stop_on_sigterm() as stop:
        plan = _plan(Path(pipeline_dir), options.validate())
        mirrors = [open_mirror(name, target) for name, target in options.mirrors.items()]
        executor = open_executor(options.executor,
                                 ExecutorSettings(options.address, options.kernel_pool))
        try:
            result = _execute(plan, executor, listener, stop)
        finally:
            executor.close()
        if result.status != "cancelled":
            _mirror(result, mirrors, plan.environments)
    return result


def _plan(folder: Path, options: RunOptions) -> _Plan:
    """Read and check everything a run needs before it starts."""
    spec = PipelineSpec.read(folder)
    values = {p.name: p.default for p in spec.parameters}
    for name, value in options.parameters.items():
        spec.parameter(name)  # unknown names are refused here
        values[name] = value
    for step in spec.steps:
        if not (folder / step.notebook).is_file():
            raise SpecError(f"{folder / step.notebook} is missing; export the notebook again")
    kernel_name = options.kernel or spec.kernel["name"]
    arguments = check_kernel(kernel_name, chosen=options.kernel is not None)
    force = options.force
    modes = select(spec, list(options.only), options.start,
                   {"*"} if force is True else set(force or ()))
    fail_on_drift = options.fail_on_drift
    if fail_on_drift is None:
        fail_on_drift = bool(spec.checks.get("fail_on_drift", False))
    environments = environments_of(kernel_name, {
        s.name: step_imports(folder / s.notebook) for s in spec.steps}, folder.resolve())
    kernel = KernelCommand(kernel_name, str((folder / spec.workdir).resolve()),
                           tuple(arguments))
    return _Plan(spec, folder, options, values, modes, environments, kernel, fail_on_drift)


def _execute(plan: _Plan, executor: Executor, listener: Listener | None,
             stop: Stop) -> RunResult:
    """Open the run in the store, run its steps, and record how it ended: a run cancelled
    (SIGTERM) is recorded ``cancelled`` and returned; any other interruption is recorded
    and raised again. The end is recorded before the kernels are shut down, so whatever
    stops this process while they are, the record is final."""
    options = plan.options
    stop.hold()  # a SIGTERM now cancels the run once it is recorded, not half-way
    store = RunStore(options.store if options.store is not None else default_store(plan.folder))
    try:
        if options.resume is not None:
            result = _reopen(store, options.resume, plan.spec)
        else:
            result = _new_run(store, plan, options.runs_dir, options.run_id)
    except BaseException:
        store.close()
        raise
    jobs = options.jobs or executor.parallelism() or os.cpu_count() or 1
    runner = _Run(plan, result, store, executor, jobs, listener, stop)
    heartbeat = Heartbeat(store.path, result.run_id).start()
    stopped: BaseException | None = None
    try:
        stop.arm()
        runner.schedule()
    except Cancelled as err:  # recorded below, then returned: the caller decides to exit
        stopped = err
    except BaseException as err:
        stopped = err
        raise
    finally:
        stop.hold()  # the end is recorded whole, whatever signal comes now
        heartbeat.stop()
        try:
            _record_end(runner, store, stopped)
        finally:  # the record first: what stops this process while kernels close finds it
            runner.close()
            store.close()
    return result


def _record_end(runner: _Run, store: RunStore, stopped: BaseException | None) -> None:
    """Say in the store, then in ``run.json``, how the run ended. Once it has, no step says
    it runs: a stopped run's step still running (its kernel killed, its thread not yet
    back) ended with it, and a cancelled run's steps that had not finished are
    ``cancelled``, each in the store as in ``run.json``."""
    with runner.lock:  # a step thread still busy ends nothing after this
        runner.ended = True
        _record_ending(runner, store, stopped)


def _record_ending(runner: _Run, store: RunStore, stopped: BaseException | None) -> None:
    """:func:`_record_end`'s work, under the run's lock."""
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


def _mirror(result: RunResult, mirrors: list[Mirror],
            environments: dict[str, dict[str, Any]]) -> None:
    """Copy the finished run to each mirror; a mirror's own failure is one line."""
    packages = {k: v for e in environments.values() for k, v in e["packages"].items()}
    for mirror in mirrors:
        try:
            mirrored = mirror.mirror(result, packages)
        except MlopsError:
            raise
        except Exception as err:  # the tracker's own errors: a bad URI, a store it cannot open
            raise MlopsError(f"run {result.run_id} {result.status}, but mirroring it to "
                             f"{mirror.name} at {mirror.target} failed: "
                             f"{type(err).__name__}: {err}") from None
        result.mirrored[mirror.name] = mirrored


def _new_run(store: RunStore, plan: _Plan, runs_dir: str | Path | None,
             run_id: str | None) -> RunResult:
    run_id = run_id or new_run_id()
    spec, folder, environments = plan.spec, plan.folder, plan.environments
    base = Path(runs_dir) if runs_dir is not None else folder / "runs"
    # absolute: the kernels run in the notebook's folder, not in ours
    run_folder = (base / run_id).resolve()
    try:
        (run_folder / "steps").mkdir(parents=True, exist_ok=False)
    except OSError as err:
        raise OptionError(f"cannot make the run's folder in {base}: "
                          f"{err.strerror or err}; choose another folder",
                          option="runs_dir") from None
    first = environments[spec.steps[0].name]
    store.start_run(
        run_id, spec.name, sha256_file(folder / SPEC_FILE), run_folder, plan.values,
        {"python": first["python"], "git_commit": first["git_commit"],
         "steps": {n: e["packages"] for n, e in environments.items()},
         # what a model of this run may instantiate beyond the defaults, kept where the
         # steps cannot write, for serving
         "trust": list(spec.trust)},
        plan.options.started_by, [s.name for s in spec.steps])
    if plan.options.trigger:
        store.set_trigger(run_id, dict(plan.options.trigger), None)
    return RunResult(run_id=run_id, folder=run_folder, pipeline=spec.name,
                     parameters=plan.values, steps=[StepResult(s.name) for s in spec.steps])


def _reopen(store: RunStore, run_id: str, spec: PipelineSpec) -> RunResult:
    """An earlier run, its finished steps kept, ready to run the rest in its own folder."""
    earlier = store.run(run_id)
    if earlier.pipeline != spec.name:
        raise MlopsError(f"run {earlier.run_id} is of pipeline `{earlier.pipeline}`, not "
                         f"`{spec.name}`")
    steps = []
    for step in spec.steps:
        state = StepResult(step.name)
        row = earlier.step(step.name)
        if row is not None and row.status == "done":
            state.status, state.started, state.ended = "done", row.started, row.ended
            state.outputs, state.checks = row.outputs, row.checks
            state.cached_from, state.notebook = row.cached_from, row.notebook or ""
        steps.append(state)
    store.reopen_run(earlier.run_id)
    return RunResult(run_id=earlier.run_id, folder=Path(earlier.folder),
                     pipeline=spec.name, parameters=earlier.parameters, steps=steps)
