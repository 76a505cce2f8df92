"""The runner: executes a pipeline's steps with papermill, in dependency order, in parallel.

Each run gets a folder ``RUNS/RUN_ID/`` with the executed step notebooks (``steps/``), the
artifacts each step saved (``artifacts/STEP/``) and ``run.json``, which is rewritten
atomically whenever a step changes state, so anyone can follow a run by reading it. Where
the step notebooks execute is an executor's business (:mod:`..execution.executors`), and
where a finished run is mirrored a mirror's (:mod:`.mirrors`): the runner imports neither.
The runner plans a run and opens it in the store; its steps are run, recorded and told by
:mod:`.inprogress`.

While a run runs, a daemon thread renews its heartbeat in the store (:class:`.store.Heartbeat`),
and a SIGTERM (``kill``, a cancel from JupyterLab, a process manager stopping the machine)
cancels it cleanly: its kernels are stopped and the run is recorded ``cancelled`` in the store
and in ``run.json`` before the process exits (:mod:`.stop`).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import MlopsError, OptionError, SpecError
from ..execution.executors import Executor, ExecutorSettings, open_executor
from ..execution.stepexec import KernelCommand, check_kernel
from ..pipeline.spec import SPEC_FILE, PipelineSpec
from ..runtime._files import sha256_file
from .cache import environments as environments_of
from .cache import step_imports
from .heartbeat import Heartbeat
from .inprogress import PlannedRun, RunInProgress, record_end
from .mirrors import Mirror, open_mirror
from .options import RunOptions
from .results import Listener, RunResult, StepResult, new_run_id
from .selection import SKIP, select
from .stop import Cancelled, Stop, stop_on_sigterm
from .store import RunStore, default_store
from .threads import kernel_threads

__all__ = ["Cancelled", "run_pipeline", "stop_on_sigterm"]


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
            cluster = executor.parallelism()  # a cluster's kernels are not started here
            jobs = options.jobs or cluster or os.cpu_count() or 1
            running = {name for name, mode in plan.modes.items() if mode != SKIP}
            with kernel_threads(plan.spec, 1 if cluster else jobs, running=running) as threads:
                result = _execute(plan, executor, listener, stop, jobs, threads)
        finally:
            executor.close()
        if result.status != "cancelled":
            _mirror(result, mirrors, plan.environments)
    return result


def _plan(folder: Path, options: RunOptions) -> PlannedRun:
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
    imports = {s.name: step_imports(folder / s.notebook) for s in spec.steps}
    environments = environments_of(kernel_name, imports, folder.resolve())
    kernel = KernelCommand(kernel_name, str((folder / spec.workdir).resolve()),
                           tuple(arguments))
    return PlannedRun(spec, folder, options, values, modes, environments, kernel, fail_on_drift,
                      imports)


def _execute(plan: PlannedRun, executor: Executor, listener: Listener | None,
             stop: Stop, jobs: int, threads: dict[str, Any] | None) -> RunResult:
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
            result = _new_run(store, plan, options.runs_dir, options.run_id, threads)
    except BaseException:
        store.close()
        raise
    runner = RunInProgress(plan, result, store, executor, jobs, listener, stop)
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
            record_end(runner, store, stopped)
        finally:  # the record first: what stops this process while kernels close finds it
            runner.close()
            store.close()
    return result


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


def _new_run(store: RunStore, plan: PlannedRun, runs_dir: str | Path | None,
             run_id: str | None, threads: dict[str, Any] | None = None) -> RunResult:
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
         "trust": list(spec.trust),
         # the threads each kernel was given, and the figures that chose them
         **({"kernel_threads": threads} if threads else {})},
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
