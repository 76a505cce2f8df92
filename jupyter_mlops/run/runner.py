"""The runner: executes a pipeline's steps with papermill, in dependency order, in parallel.

Each run gets a folder ``RUNS/RUN_ID/`` with the executed step notebooks (``steps/``), the
artifacts each step saved (``artifacts/STEP/``) and ``run.json``, which is rewritten
atomically whenever a step changes state, so anyone can follow a run by reading it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import MlopsError, SpecError
from ..execution.daskexec import DaskExecutor
from ..execution.kernelpool import KernelPool
from ..execution.stepexec import (
    check_kernel,
    close_thread_loop,
    execute_step,
    step_plan,
    zygote_plan,
)
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
    environment,
    file_fingerprints,
    reuse,
    step_imports,
    step_key,
    step_strings,
)
from .failure import describe_failure, mark_timeout
from .mlflowsync import mirror_run, require_mlflow
from .results import RUN_FILE, Listener, RunResult, StepResult, new_run_id
from .selection import FORCE, REUSE, RUN, SKIP, select
from .store import RunStore, default_store


class _Run:
    """One run in progress; the scheduler around papermill."""

    def __init__(self, spec: PipelineSpec, pipeline_dir: Path, result: RunResult,
                 jobs: int, cell_timeout: float | None, listener: Listener | None,
                 fail_on_drift: bool = False, store: RunStore | None = None,
                 modes: dict[str, str] | None = None,
                 environments: dict[str, dict[str, Any]] | None = None,
                 kernel_arguments: list[str] | None = None) -> None:
        self.fail_on_drift = fail_on_drift
        self.store = store
        self.modes = modes or {s.name: RUN for s in spec.steps}
        self.environments = environments or {}
        self.strings = {s.name: step_strings(pipeline_dir / s.notebook) for s in spec.steps}
        self.spec = spec
        self.pipeline_dir = pipeline_dir
        self.result = result
        self.jobs = jobs
        self.cell_timeout = cell_timeout
        self.listener = listener
        self.lock = threading.Lock()
        self.by_name = {s.name: r for s, r in zip(spec.steps, result.steps, strict=True)}
        self.kernel_arguments = kernel_arguments or []
        self.pooling = True  # start kernels ahead, in a pool (not with Dask)
        self.pool: KernelPool | None = None
        self.executing = self.stopping = False  # a step ran (no cache hit); Ctrl-C was hit
        #: With ``--executor dask``, where step notebooks run instead of here.
        self.dask: DaskExecutor | None = None

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
                    state.cached_from, state.outputs, state.checks = hit
                    if self.pool is not None:
                        self.pool.discard(step.name)
                    state.status, state.ended = "done", time.time()
                    self.record(state)
                    self.emit("cached", state)
                    return
        if self.modes[step.name] == REUSE:
            state.status, state.ended = "failed", time.time()
            state.error = (f"step `{step.name}` has no recorded result for its current code, "
                           "parameters and inputs; run the whole pipeline first (--only and "
                           "--from reuse what earlier runs made)")
            self.record(state)
            self.emit("failed", state)
            return
        if self.stopping:
            return
        state.status = "running"
        self.emit("started", state)
        self.executing = True
        lease = self.pool.lease(step.name) if self.pool is not None else None
        call = {"notebook": str(self.pipeline_dir / step.notebook), "output": str(output),
                "parameters": values, "kernel": self.spec.kernel["name"],
                "cell_timeout": self.cell_timeout, "workdir": str(self.workdir()),
                "extra_arguments": self.kernel_arguments}
        try:
            if self.dask is not None:
                self.dask.run(**call)  # a callback cannot cross to a worker: no cell progress
            else:
                execute_step(**call, on_cell=self.cell_listener(state),
                             kernel_manager=None if lease is None else lease.wait)
        except Exception as err:  # a failed cell, a dead kernel, a timeout: the step failed
            if self.cell_timeout is not None:
                mark_timeout(output, self.cell_timeout)
            state.error, state.cell = describe_failure(err, step, output, self.cell_timeout,
                                                       self.spec.source)
            if self.stopping:
                state.error = f"step `{step.name}` was interrupted (see {output})"
            state.status = "failed"
        else:
            state.status = "done"
            state.outputs = _read_outputs(artifacts / step.name, step)
        finally:
            if lease is not None:
                lease.release()
            close_thread_loop()
        state.checks = _read_checks(artifacts / step.name)
        state.ended = time.time()
        self.record(state)
        self.emit(state.status, state)

    def upcoming(self) -> list[str]:
        """The steps expected to start next, for the pool; none until a step really ran,
        so a run whose results all come from the cache starts no kernel."""
        if not self.executing or self.stopping:
            return []
        return [s.name for s in self.spec.steps if self.by_name[s.name].status == "pending"
                and self.modes[s.name] in (RUN, FORCE)]

    def cell_listener(self, state: StepResult) -> Callable[[int, int, Any], None]:
        """Keeps ``state`` on the cell that runs; tells listeners at most once a second."""
        last = [0.0]

        def on_cell(index: int, total: int, cell: Any) -> None:
            state.cell_index, state.cell_total = index + 1, total
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                self.emit("cell", state)

        return on_cell

    def record(self, state: StepResult) -> None:
        """Write a finished step to the store, in one transaction."""
        if self.store is None:
            return
        step = self.spec.step(state.name)
        inputs = {name: {"step": producer, "sha256": self.by_name[producer].outputs.get(
            name, {}).get("sha256", "")} for name, producer in step.inputs.items()}
        used = {n: self.result.parameters.get(n) for n in step.parameters}
        with self.lock:
            self.store.record_step(
                self.result.run_id, state.name, status=state.status, started=state.started,
                ended=state.ended, cache_key=state.cache_key, cached_from=state.cached_from,
                notebook=state.notebook, error=state.error, checks=state.checks,
                outputs=state.outputs, files=state.files, inputs=inputs,
                code_sha256=step.code_sha256, parameters=used)

    def workdir(self) -> Path:
        return (self.pipeline_dir / self.spec.workdir).resolve()

    def schedule(self) -> None:
        """Start every step whose upstream steps are done; stop starting on a failure."""
        for step in self.spec.steps:
            state = self.by_name[step.name]
            if self.modes[step.name] == SKIP and state.status != "done":
                state.status = "skipped"
                self.record(state)
        waiting = [s for s in self.spec.steps if self.by_name[s.name].status == "pending"]
        if self.pooling and self.dask is None:
            # one more than -j waits: a chain of short steps then warms two kernels ahead
            self.pool = KernelPool(self.spec.kernel["name"], self.workdir(),
                                   self.kernel_arguments, self.jobs + 1, self.upcoming,
                                   partial(step_plan, self.spec, self.pipeline_dir),
                                   preload=partial(zygote_plan, self.spec, self.pipeline_dir))
        threads = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="mlops-step")
        try:
            self.dispatch(threads, waiting)
        except BaseException:  # Ctrl-C: kill the kernels, so running steps end now
            self.stopping = True
            if self.pool is not None:
                self.pool.kill()
            raise
        finally:
            threads.shutdown(wait=True)
            if self.pool is not None:
                self.pool.close()  # every kernel it started, used or not, is shut down
        for step in waiting:
            state = self.by_name[step.name]
            state.status = "not run"
            self.record(state)
            self.emit("not run", state)

    def dispatch(self, threads: ThreadPoolExecutor, waiting: list[Step]) -> None:
        """Submit each waiting step once its upstream steps are done, ``jobs`` at a time."""
        running: dict[Future[None], Step] = {}
        while waiting or running:
            if not any(r.status == "failed" for r in self.result.steps):
                for step in list(waiting):
                    if len(running) >= self.jobs:
                        break
                    if all(self.by_name[a].status == "done" for a in step.after):
                        waiting.remove(step)
                        running[threads.submit(self.execute, step)] = step
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
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


def run_pipeline(pipeline_dir: str | Path, parameters: dict[str, Any] | None = None,
                 *, runs_dir: str | Path | None = None, jobs: int | None = None,
                 cell_timeout: float | None = None, listener: Listener | None = None,
                 run_id: str | None = None, fail_on_drift: bool | None = None,
                 store: str | Path | None = None, force: bool | list[str] = False,
                 only: list[str] | None = None, start: str | None = None,
                 resume: str | None = None, started_by: str = "api",
                 mlflow: str | None = None, executor: str = "local",
                 scheduler: str | None = None, kernel_pool: bool = True) -> RunResult:
    """Run the pipeline in ``pipeline_dir``; return the run's result (failed or not).

    ``parameters`` are typed values (see :meth:`PipelineSpec.parse_parameters`);
    ``fail_on_drift`` overrides the spec's setting of the same name. Every run is recorded
    in ``store`` (default ``PIPELINE/.mlops/store.sqlite``); a step whose content key is
    there already reuses its outputs unless ``force`` is True or names it. ``only`` runs
    just those steps and ``start`` a step and all after it, upstream steps coming from the
    store; ``resume`` re-runs the failed and unfinished steps of an earlier run in place;
    ``mlflow`` (a tracking URI) mirrors the finished run into MLflow; ``executor="dask"``
    runs the step notebooks on the Dask cluster at ``scheduler``; ``kernel_pool=False``
    starts each step's kernel when the step starts instead of ahead (:mod:`.kernelpool`).
    User errors (a bad folder, parameter, step or kernel) raise :class:`MlopsError` before
    anything starts.
    """
    folder = Path(pipeline_dir)
    spec = PipelineSpec.read(folder)
    values = {p.name: p.default for p in spec.parameters}
    for name, value in (parameters or {}).items():
        spec.parameter(name)  # unknown names are refused here
        values[name] = value
    if jobs is not None and jobs < 1:
        raise MlopsError(f"-j needs a number of parallel steps of at least 1, got {jobs}")
    if cell_timeout is not None and cell_timeout <= 0:
        raise MlopsError(f"--cell-timeout needs a positive number of seconds, got {cell_timeout}")
    for step in spec.steps:
        if not (folder / step.notebook).is_file():
            raise SpecError(f"{folder / step.notebook} is missing; export the notebook again")
    kernel_arguments = check_kernel(spec.kernel["name"])
    if mlflow is not None:
        require_mlflow()  # say which extra is missing before anything runs
    if executor not in ("local", "dask"):
        raise MlopsError(f"unknown executor `{executor}`; use local or dask")
    if executor == "dask" and not scheduler:
        raise MlopsError("--executor dask needs --scheduler ADDRESS, e.g. tcp://127.0.0.1:8786")
    dask = DaskExecutor(scheduler) if executor == "dask" and scheduler else None
    modes = select(spec, only, start, {"*"} if force is True else set(force or []))
    if fail_on_drift is None:
        fail_on_drift = bool(spec.checks.get("fail_on_drift", False))
    environments = {s.name: environment(spec.kernel["name"], step_imports(folder / s.notebook),
                                        folder.resolve()) for s in spec.steps}
    run_store = RunStore(store if store is not None else default_store(folder))
    try:
        if resume is not None:
            if parameters:
                raise MlopsError("--resume re-runs with the run's own parameters; drop -p")
            result = _reopen(run_store, resume, spec)
        else:
            result = _new_run(run_store, spec, folder, values, runs_dir, run_id, environments,
                              started_by)
    except BaseException:
        run_store.close()
        if dask is not None:
            dask.close()
        raise
    if dask is not None and jobs is None:
        jobs = len(dask.client.scheduler_info().get("workers", {})) or None
    runner = _Run(spec, folder, result, jobs or os.cpu_count() or 1, cell_timeout, listener,
                  fail_on_drift, run_store, modes, environments, kernel_arguments)
    runner.dask, runner.pooling = dask, kernel_pool
    try:
        runner.schedule()
    finally:
        failed = [s for s in result.steps if s.status == "failed"]
        result.status = "failed" if failed or any(
            s.status not in ("done", "skipped") for s in result.steps) else "succeeded"
        result.error = failed[0].error if failed else None
        result.ended = time.time()
        run_store.finish_run(result.run_id, result.status, result.error)
        run_store.close()
        if dask is not None:
            dask.close()
        runner.emit("finished", result.steps[-1])
    if mlflow is not None:
        packages = {k: v for e in environments.values() for k, v in e["packages"].items()}
        try:
            result.mlflow_run_id = mirror_run(result, mlflow, packages)
        except MlopsError:
            raise
        except Exception as err:  # MLflow's own errors: a bad URI, a store it cannot open
            raise MlopsError(f"run {result.run_id} {result.status}, but mirroring it to MLflow "
                             f"at {mlflow} failed: {type(err).__name__}: {err}") from None
    return result


def _new_run(store: RunStore, spec: PipelineSpec, folder: Path, values: dict[str, Any],
             runs_dir: str | Path | None, run_id: str | None,
             environments: dict[str, dict[str, Any]], started_by: str) -> RunResult:
    run_id = run_id or new_run_id()
    base = Path(runs_dir) if runs_dir is not None else folder / "runs"
    # absolute: the kernels run in the notebook's folder, not in ours
    run_folder = (base / run_id).resolve()
    (run_folder / "steps").mkdir(parents=True, exist_ok=False)
    first = environments[spec.steps[0].name]
    store.start_run(
        run_id, spec.name, sha256_file(folder / SPEC_FILE), run_folder, values,
        {"python": first["python"], "git_commit": first["git_commit"],
         "steps": {n: e["packages"] for n, e in environments.items()}},
        started_by, [s.name for s in spec.steps])
    return RunResult(run_id=run_id, folder=run_folder, pipeline=spec.name,
                     parameters=values, steps=[StepResult(s.name) for s in spec.steps])


def _reopen(store: RunStore, run_id: str, spec: PipelineSpec) -> RunResult:
    """An earlier run, its finished steps kept, ready to run the rest in its own folder."""
    earlier = store.run(run_id)
    if earlier["pipeline"] != spec.name:
        raise MlopsError(f"run {earlier['run_id']} is of pipeline `{earlier['pipeline']}`, not "
                         f"`{spec.name}`")
    recorded = {s["step"]: s for s in earlier["steps"]}
    steps = []
    for step in spec.steps:
        state = StepResult(step.name)
        row = recorded.get(step.name)
        if row is not None and row["status"] == "done":
            state.status, state.started, state.ended = "done", row["started"], row["ended"]
            state.outputs, state.checks = row["outputs"], row["checks"]
            state.cached_from, state.notebook = row["cached_from"], row["notebook"] or ""
        steps.append(state)
    store.reopen_run(earlier["run_id"])
    return RunResult(run_id=earlier["run_id"], folder=Path(earlier["folder"]),
                     pipeline=spec.name, parameters=earlier["parameters"], steps=steps)
