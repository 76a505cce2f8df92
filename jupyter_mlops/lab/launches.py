"""Pipeline runs started from JupyterLab: each one a child process the server watches.

A run started from the sidebar must go on when the browser tab closes, must not stall the
server while kernels start, and must be cancellable. A child process (``python -m
jupyter_mlops.lab.runprocess``) gives all three: the server only reads the ``run.json`` the runner
keeps rewriting, and cancelling is a SIGTERM, which the runner turns into a clean stop: its
kernels are killed and its record, in ``run.json`` and the store, says ``cancelled`` before
it exits, whether or not this server is still there to see it.

A job's state changes only under its lock: ``running`` until its process exits
(``finished``), or ``cancelling`` from a cancel until then (``cancelled``). One thread per
job waits for the process and makes that change; nothing else asks the process whether it
runs (``Popen.poll()`` answers None, "running", while another thread waits on the same
process, even for one that has exited). Should the runner not manage its own record (killed
before it could, or before it had one), the server makes it final once the process is gone
(:func:`~jupyter_mlops.run.results.finish_cancelled`): the run and every step it had not
finished say ``cancelled`` in ``run.json`` and the store, so nothing shows as running, or
merely failed, after the server restarts. A run whose runner died on its own reads
``interrupted`` (the store decides it, :func:`~jupyter_mlops.run.store.runner_gone`), with
the command that resumes it.

What the sidebar reads of a run (:meth:`LabJobs.status`) names files as the contents API
spells them, relative to the server's root: never an absolute path of the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import MlopsError
from ..run.results import RUN_FILE, UNFINISHED, new_run_id
from .runprocess import CANCEL_REASON

if TYPE_CHECKING:
    from ..run.records import RunRecord
    from ..run.results import RunResult

#: A cancelled run has twice this many seconds after SIGTERM to stop its kernels and record
#: its end; then it and what it started are killed (SIGKILL).
GRACE = 5.0


@dataclass
class LabJob:
    """One run the server started: its process, its state and where its record lands."""

    run_id: str
    pipeline: Path
    folder: Path
    process: subprocess.Popen[bytes]
    log: Path
    #: The run's parameters, as its record says them should it have to be made here.
    parameters: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    #: ``running``, ``cancelling``, ``finished`` or ``cancelled``; changed under ``lock``.
    state: str = "running"
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Set once the process has exited and ``state`` says how the run ended.
    ended: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        """True until the child process has exited (as its waiter saw, :meth:`watch`)."""
        return not self.ended.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether the run was cancelled (its process may still be ending)."""
        return self.state in ("cancelling", "cancelled")

    def watch(self) -> None:
        """Wait for the process (this job's only waiter), then record how the run ended."""
        self.process.wait()
        with self.lock:  # a cancel now finds it ended, and only waits for the record below
            self.state = "cancelled" if self.state == "cancelling" else "finished"
        try:
            if self.state == "cancelled":
                _record_cancelled(self)
        finally:
            self.ended.set()

    def last_lines(self, count: int = 5) -> list[str]:
        """The end of what the run printed (its one-line error, when it failed); never the
        debugger's warnings (:func:`~jupyter_mlops.execution.kernellog.debugger_noise`)."""
        from ..execution.kernellog import debugger_noise

        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return [line for line in text.splitlines()
                if line.strip() and not debugger_noise(line)][-count:]


class LabJobs:
    """The runs this server started, by run id."""

    def __init__(self) -> None:
        self.jobs: dict[str, LabJob] = {}

    def start(self, pipeline: Path, parameters: dict[str, Any],
              kernel: str | None = None) -> LabJob:
        """Start a run of ``pipeline`` in a child process (its steps in ``kernel``, else the
        pipeline's); return at once."""
        from ..pipeline.spec import PipelineSpec

        PipelineSpec.read(pipeline)  # a missing or broken pipeline is the user's 4xx, now
        run_id = new_run_id()
        folder = (pipeline / "runs" / run_id).resolve()
        logs = pipeline / ".mlops" / "lab"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{run_id}.log"
        command = [sys.executable, "-m", "jupyter_mlops.lab.runprocess", str(pipeline), "--run-id",
                   run_id, "--parameters", json.dumps(parameters)]
        if kernel is not None:
            command += ["--kernel", kernel]
        with open(log, "wb") as out:
            # its own session: a Ctrl-C in the server's terminal must not cancel the runs
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        job = LabJob(run_id, pipeline, folder, process, log, dict(parameters))
        self.jobs[run_id] = job
        threading.Thread(target=job.watch, daemon=True, name=f"mlops-run-{run_id}").start()
        return job

    def cancel(self, run_id: str, wait: float = 2 * GRACE + 5) -> bool:
        """Stop a running run: SIGTERM to its runner, then SIGKILL to what lingers; True if
        this call cancelled it, False if it had ended or was being cancelled.

        The runner takes SIGTERM as a cancel (:func:`~jupyter_mlops.run.runner.stop_on_sigterm`):
        it kills its kernels, records the run ``cancelled`` in ``run.json`` and the store, and
        exits, so the record is final even if this server stops meanwhile. A run already
        being cancelled is waited for, up to ``wait`` seconds (its end is bounded by the
        escalation to SIGKILL), so the answer says it has ended once it has.
        """
        job = self.jobs.get(run_id)
        if job is None:
            raise MlopsError(f"run `{run_id}` was not started by this server")
        with job.lock:
            cancelling = job.state == "running"
            if cancelling:
                job.state = "cancelling"
                with contextlib.suppress(ProcessLookupError):  # exited: its waiter records it
                    os.kill(job.process.pid, signal.SIGTERM)
        if cancelling:
            threading.Thread(target=_escalate, args=(job,), daemon=True,
                             name=f"mlops-cancel-{run_id}").start()
        else:
            job.ended.wait(wait)
        return cancelling

    def status(self, pipeline: Path, run_id: str, root: Path | None = None) -> dict[str, Any]:
        """The run as ``run.json`` has it now, plus the server's view of its process.

        A run this server did not start (it started before a restart, or elsewhere) that
        ``run.json`` says runs is as the store reads it: ``interrupted`` when its runner is
        gone, or how the store says it ended. Once the run has ended, no step says it runs.
        Given ``root``, files are named relative to it (:func:`~.view.for_sidebar`).

        Raises :class:`~.view.RecordError` when the record is damaged, or (given ``root``)
        kept outside ``root``; :class:`MlopsError` when there is no such run.
        """
        from .guard import relative_to
        from .view import RecordError, for_sidebar, read_run_file

        job = self.jobs.get(run_id)
        stored = None if job is not None else _recorded(pipeline, run_id)
        folder = job.folder if job is not None else (
            Path(stored.folder) if stored is not None else None)
        if folder is not None and root is not None and not relative_to(root, folder):
            raise RecordError(f"run `{run_id}` is recorded outside the server's root "
                              f"directory; see it with `jupyter mlops runs show {run_id}`")
        data: dict[str, Any] = {"run_id": run_id, "status": "starting", "steps": []}
        if folder is not None:
            try:
                data = read_run_file(folder / RUN_FILE, f"{run_id}/{RUN_FILE}")
            except FileNotFoundError:
                if job is None:
                    raise MlopsError(f"run `{run_id}` has no {RUN_FILE} in {folder}") from None
        if job is not None:
            data["cancelled"] = job.cancelled
            if not job.running and data.get("status") in ("starting", "running"):
                # the child died before finishing its record (killed, or a user error)
                data["status"] = "cancelled" if job.cancelled else "failed"
                data["error"] = data.get("error") or " ".join(job.last_lines(1)) or None
            if job.cancelled and data.get("status") == "failed":
                data["status"] = "cancelled"
            if not job.running and data.get("status") == "failed" and not data.get("error"):
                data["error"] = " ".join(job.last_lines(1)) or None
        elif folder is None:
            raise MlopsError(f"no run `{run_id}` in {pipeline}; the history lists the runs")
        elif (stored is not None and stored.status != "running"
              and data.get("status") in ("starting", "running")):
            data["status"] = stored.status  # interrupted, or ended as run.json could not say
            data["error"] = stored.interrupted or stored.error
        _settle_steps(data)
        return data if root is None else for_sidebar(data, root)

    def active(self, pipeline: Path) -> list[str]:
        """Run ids of ``pipeline`` that are still running."""
        return [j.run_id for j in self.jobs.values()
                if j.pipeline == pipeline and j.running]


def _settle_steps(data: dict[str, Any]) -> None:
    """The steps of a run that has ended, as its end says: a step its runner could not
    record the end of (it still says ``running``) ended as the run did (``cancelled``,
    ``interrupted``, ``failed``), and a cancelled run's steps that never ran are
    ``cancelled`` too."""
    status = data.get("status")
    if status in ("starting", "running"):
        return
    for step in data.get("steps") or []:
        if not isinstance(step, dict):
            continue
        if step.get("status") == "running" or (
                status == "cancelled" and step.get("status") in UNFINISHED):
            step["status"] = status if status in ("cancelled", "interrupted") else "failed"


def _signal(processes: list[Any], signum: int) -> None:
    """Send ``signum`` to each process that is still there."""
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            process.send_signal(signum)


def _escalate(job: LabJob, grace: float = GRACE) -> None:
    """SIGKILL a cancelled run's runner and what it started, if it has not ended within twice
    ``grace`` seconds of its SIGTERM."""
    import psutil

    if job.ended.wait(2 * grace):  # not the process's own wait: :meth:`LabJob.watch` has it
        return
    try:
        parent = psutil.Process(job.process.pid)
        _signal([*parent.children(recursive=True), parent], signal.SIGKILL)
    except psutil.NoSuchProcess:
        return


def _record_cancelled(job: LabJob) -> None:
    """Make the record of the ended, cancelled run final in ``run.json`` and the store, as
    the runner could not if it was killed first (:func:`~..run.results.finish_cancelled`)."""
    from ..run.results import finish_cancelled
    from ..run.store import RunStore, default_store

    store = RunStore(default_store(job.pipeline))
    try:
        finish_cancelled(job.folder, store, CANCEL_REASON, lambda: _unrecorded(job, store))
    finally:
        store.close()


def _unrecorded(job: LabJob, store: Any) -> RunResult:
    """The first record of a run cancelled before its runner recorded it (it was still
    starting): its steps as the pipeline has them, recorded in ``store`` as they are."""
    from ..pipeline.spec import SPEC_FILE, PipelineSpec
    from ..run.results import RunResult, StepResult
    from ..runtime._files import sha256_file

    spec = PipelineSpec.read(job.pipeline)
    steps = [s.name for s in spec.steps]
    store.start_run(job.run_id, spec.name, sha256_file(job.pipeline / SPEC_FILE), job.folder,
                    job.parameters, {}, "jupyterlab", steps)
    return RunResult(job.run_id, job.folder, spec.name, job.parameters,
                     [StepResult(name) for name in steps], started=job.started)


def _recorded(pipeline: Path, run_id: str) -> RunRecord | None:
    """The record of a run the store knows (its status as read now), or None."""
    from ..run.store import RunStore, default_store

    path = default_store(pipeline)
    if not path.is_file():
        return None
    store = RunStore(path)
    try:
        return store.run(run_id)
    except MlopsError:
        return None
    finally:
        store.close()
