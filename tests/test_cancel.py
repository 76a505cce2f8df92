"""Runs that end: a cancel from the sidebar, at any moment of a run, leaves the run and every
step it had not finished `cancelled` in the store and in run.json, as a restarted server reads
them; the progress a step reports counts the user's cells and names the source cell; a run's
status names files relative to the server's root; step kernels never print the debugger's
frozen-modules warning.

Real things throughout: a real jupyter_server with the extension (pytest-jupyter), real run
processes, real kernels. Each moment is reached by waiting on what can be seen (a file a cell
writes, the run's status, the process table), never by sleeping.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import run_cli, write_notebook
from test_server import call

from jupyter_mlops.execution.kernellog import last_words
from jupyter_mlops.lab.launches import LabJob, LabJobs
from jupyter_mlops.lab.view import run_history
from jupyter_mlops.run.options import RunOptions
from jupyter_mlops.run.results import new_run_id
from jupyter_mlops.run.runner import run_pipeline
from jupyter_mlops.run.store import RunStore, default_store

pytestmark = pytest.mark.kernel

PIPELINE = "work/cancel_pipeline"
#: The source notebook's number of step `slow`'s cell that sleeps or makes what saves slowly.
SLOW_CELL = 4
#: A kernel that takes ten minutes to start: it writes KERNEL_STARTING in its folder, sleeps,
#: and only then becomes an ipykernel (not `python -m ipykernel_launcher`: never forked).
SLOW_START = ("import runpy, sys, time; open('KERNEL_STARTING', 'w').close(); time.sleep(600); "
              "sys.argv = ['ipykernel_launcher', *sys.argv[1:]]; "
              "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)")
#: A kernel of this Python without `-Xfrozen_modules=off`, as `python -m ipykernel install`
#: wrote it before ipykernel 6.22, and as jupyter_client's own default is.
FROZEN_KERNEL = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                 "display_name": "Python (no -X option)", "language": "python"}


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load our extension, as the jupyter-config file does for an installed package."""
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


# -- waiting on what can be seen ------------------------------------------------------------

async def until(what: str, check: Callable[[], Awaitable[Any]], timeout: float = 180) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def status(jp_fetch: Any, run_id: str, pipeline: str = PIPELINE) -> dict[str, Any]:
    code, data = await call(jp_fetch, "GET", "runs", run_id, params={"pipeline": pipeline})
    assert code == 200, data
    return data


async def step_state(jp_fetch: Any, run_id: str, name: str) -> dict[str, Any]:
    """Step ``name`` as the run's status has it ({} while the run has no record yet)."""
    steps = (await status(jp_fetch, run_id))["steps"]
    return next((s for s in steps if s["name"] == name), {})


async def ended(jp_fetch: Any, run_id: str, pipeline: str = PIPELINE) -> None:
    """Wait until the run's process has ended and the server has seen it (its record is then
    final, whoever made it so)."""
    async def gone() -> bool:
        code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": pipeline})
        assert code == 200, data
        return run_id not in data["active"]

    await until(f"run {run_id} to end", gone, timeout=120)


def runner_of(run_id: str) -> psutil.Process:
    """The run's process (its command line names the run id)."""
    found = [p for p in psutil.process_iter(["cmdline"])
             if run_id in " ".join(p.info["cmdline"] or [])]
    assert len(found) == 1, found
    return found[0]


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- the pipeline ---------------------------------------------------------------------------

def cancel_notebook(root: Path) -> Path:
    """Steps first -> slow -> last; parameter `mode` says what step `slow` does: `sleep` (its
    cell 4 sleeps ten minutes), `save` (what it makes takes ten minutes to save) or `quick`.
    Each moment leaves a file in the notebook's folder."""
    return write_notebook(
        root / "work" / "cancel.ipynb",
        "%%mlops setup\nimport os\nimport time\n\n\nclass Slow:\n"
        "    def __reduce__(self):\n        open('SAVING', 'w').close()\n"
        "        time.sleep(600)\n        return (Slow, ())",
        '%%mlops params\nmode = "quick"',
        "%%mlops step first\nopen('FIRST', 'w').close()\nx = 1",
        "%%mlops step slow\nif mode == 'sleep':\n    open('SLEEPING', 'w').close()\n"
        "    time.sleep(600)\nthing = Slow() if mode == 'save' else x",
        "%%mlops step last\nscore = 1.0 if mode == 'save' else float(thing) + 1",
        "%mlops metrics score")


@pytest.fixture
def cancel_pipeline(jp_root_dir: Path) -> Path:
    notebook = cancel_notebook(jp_root_dir)
    done = run_cli("export", str(notebook), "--allow-pickle")
    assert done.returncode == 0, done.stderr
    return jp_root_dir / PIPELINE


def install_slow_kernel(jp_kernel_dir: Path) -> str:
    """A kernelspec `slowstart`, visible to the server and to the runs it starts."""
    folder = jp_kernel_dir / "slowstart"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", SLOW_START, "-f", "{connection_file}"],
        "display_name": "slow to start", "language": "python"}), encoding="utf-8")
    return "slowstart"


# -- what a cancelled run must say, everywhere ---------------------------------------------

def assert_final(record: dict[str, Any] | list[tuple[str, str]], run_status: str,
                 where: str) -> None:
    """The run ended ``run_status``; no step says it runs or waits; in a cancelled run each
    step is done or cancelled."""
    steps = record if isinstance(record, list) else [(s["name"], s["status"])
                                                     for s in record["steps"]]
    assert steps, where
    allowed = {"done", "cancelled"} if run_status == "cancelled" else {"done"}
    assert {status for _, status in steps} <= allowed, (where, steps)


async def assert_cancelled_everywhere(jp_fetch: Any, jp_serverapp: Any, pipeline: Path,
                                      run_id: str, status_expected: str = "cancelled") -> None:
    """run.json, the store, this server, and a server that did not start the run (a
    restarted one) all say the run ended ``status_expected`` and no step runs."""
    record = json.loads((pipeline / "runs" / run_id / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == status_expected, record
    assert_final(record, status_expected, "run.json")
    raw = sqlite3.connect(default_store(pipeline))
    try:  # as written, not as read: a row left `running` would read `interrupted`
        row = raw.execute("SELECT status FROM runs WHERE run_id=?", (run_id,)).fetchone()
        rows = raw.execute("SELECT step, status FROM steps WHERE run_id=? ORDER BY rowid",
                           (run_id,)).fetchall()
    finally:
        raw.close()
    assert row == (status_expected,)
    assert_final(rows, status_expected, "the store")
    assert [s["status"] for s in record["steps"]] == [status for _, status in rows]
    shown = await status(jp_fetch, run_id)
    assert shown["status"] == status_expected
    assert_final(shown, status_expected, "this server")
    # a restarted server: the same store and files, no memory of the run's process
    jp_serverapp.web_app.settings["mlops_jobs"] = LabJobs()
    shown = await status(jp_fetch, run_id)
    assert shown["status"] == status_expected and "cancelled" not in shown
    assert_final(shown, status_expected, "a restarted server")
    code, data = await call(jp_fetch, "GET", "runs", params={"pipeline": PIPELINE})
    assert code == 200, data
    assert [(r["run_id"], r["status"]) for r in data["runs"]] == [(run_id, status_expected)]


# -- cancel at each moment ------------------------------------------------------------------

async def _at_once(jp_fetch: Any, run_id: str, pipeline: Path) -> None:
    """Cancel as the run starts (its process may not even have read its arguments)."""


async def _while_planned(jp_fetch: Any, run_id: str, pipeline: Path) -> None:
    """Not reached: the store is held by the test until the cancel (see the test)."""


async def _kernel_start(jp_fetch: Any, run_id: str, pipeline: Path) -> None:
    """Step `first` runs while its kernel is still starting."""
    async def starting() -> bool:
        return ((pipeline.parent / "KERNEL_STARTING").is_file()
                and (await step_state(jp_fetch, run_id, "first")).get("status") == "running")

    await until("the first step's kernel to be starting", starting)


async def _mid_cell(jp_fetch: Any, run_id: str, pipeline: Path) -> None:
    """Step `slow` is in its ten-minute cell, and says so."""
    async def sleeping() -> bool:
        step = await step_state(jp_fetch, run_id, "slow")
        return ((pipeline.parent / "SLEEPING").is_file() and step.get("status") == "running"
                and step["source_cell"] == SLOW_CELL)

    await until("step `slow` to sleep", sleeping)
    step = await step_state(jp_fetch, run_id, "slow")
    assert (step["cell"], step["cells"]) == (1, 1)


async def _saving(jp_fetch: Any, run_id: str, pipeline: Path) -> None:
    """Step `slow` saves its output (a generated cell: no source cell)."""
    async def saving() -> bool:
        step = await step_state(jp_fetch, run_id, "slow")
        return ((pipeline.parent / "SAVING").is_file() and step.get("status") == "running"
                and step["cell_index"] is not None and step["cell_index"] == step["cell_total"])

    await until("step `slow` to save its outputs", saving)
    step = await step_state(jp_fetch, run_id, "slow")
    assert step["source_cell"] is None and (step["cell"], step["cells"]) == (1, 1)


MOMENTS = {
    "at once": ("quick", None, _at_once),
    "while planned": ("quick", None, _while_planned),
    "during a kernel start": ("quick", "slowstart", _kernel_start),
    "in the middle of a long cell": ("sleep", None, _mid_cell),
    "while outputs are saved": ("save", None, _saving),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
async def test_a_cancel_at_any_moment_ends_the_run_cancelled_everywhere(
        moment: str, jp_fetch: Any, jp_serverapp: Any, cancel_pipeline: Path,
        jp_kernel_dir: Path) -> None:
    mode, kernel, reach = MOMENTS[moment]
    body: dict[str, Any] = {"pipeline": PIPELINE, "parameters": {"mode": mode}}
    if kernel is not None:
        body["kernel"] = install_slow_kernel(jp_kernel_dir)
    store_path = default_store(cancel_pipeline)
    held = None
    if moment == "while planned":
        # the runner records its run first thing: holding the store's write lock keeps it
        # planned, with the SIGTERM taken, until the cancel has come
        RunStore(store_path).close()
        held = sqlite3.connect(store_path, timeout=30, isolation_level=None)
        held.execute("BEGIN IMMEDIATE")
    try:
        code, data = await call(jp_fetch, "POST", "runs", body=body)
        assert code == 202, data
        run_id = data["run_id"]
        if held is not None:
            async def waiting_for_the_store() -> bool:
                try:
                    return any(f.path == str(store_path.resolve())
                               for f in runner_of(run_id).open_files())
                except psutil.Error:
                    return False

            await until("the run to open its store", waiting_for_the_store)
        await reach(jp_fetch, run_id, cancel_pipeline)
        below = [] if moment in ("at once", "while planned") else \
            runner_of(run_id).children(recursive=True)
        code, data = await call(jp_fetch, "DELETE", "runs", run_id,
                                params={"pipeline": PIPELINE})
        assert code == 202, data
    finally:
        if held is not None:
            held.execute("ROLLBACK")
            held.close()
    await ended(jp_fetch, run_id)
    await assert_cancelled_everywhere(jp_fetch, jp_serverapp, cancel_pipeline, run_id)
    record = json.loads((cancel_pipeline / "runs" / run_id / "run.json").read_text())
    if moment != "at once":  # the runner itself recorded it, saying how to resume it
        assert record["error"].startswith("cancelled from JupyterLab; resume it with ")
    if moment == "during a kernel start":
        assert [s["status"] for s in record["steps"]] == ["cancelled"] * 3
    if moment in ("in the middle of a long cell", "while outputs are saved"):
        assert [s["status"] for s in record["steps"]] == ["done", "cancelled", "cancelled"]
    deadline = time.monotonic() + 60  # nothing the run started is left
    while left := [p for p in below if alive(p)]:
        assert time.monotonic() < deadline, left
        await asyncio.sleep(0.2)


async def test_a_cancel_after_the_last_step_leaves_the_run_succeeded(
        jp_fetch: Any, jp_serverapp: Any, cancel_pipeline: Path) -> None:
    """A run whose steps all finished ends succeeded, whether the cancel finds its process
    still there (202) or gone (409): nothing says it runs."""
    code, data = await call(jp_fetch, "POST", "runs",
                            body={"pipeline": PIPELINE, "parameters": {"mode": "quick"}})
    assert code == 202, data
    run_id = data["run_id"]

    async def succeeded() -> bool:
        return (await status(jp_fetch, run_id))["status"] == "succeeded"

    await until("the run to succeed", succeeded)
    code, data = await call(jp_fetch, "DELETE", "runs", run_id, params={"pipeline": PIPELINE})
    assert code in (202, 409), data
    await ended(jp_fetch, run_id)
    await assert_cancelled_everywhere(jp_fetch, jp_serverapp, cancel_pipeline, run_id,
                                      status_expected="succeeded")


# -- the server makes the record final when the runner could not -----------------------------

def _lab_job(jobs: LabJobs, pipeline: Path, process: subprocess.Popen[bytes],
             run_id: str) -> LabJob:
    """A job of ``jobs`` for ``process``, watched as :meth:`LabJobs.start` watches its own."""
    log = pipeline / ".mlops" / "lab" / f"{run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    job = LabJob(run_id, pipeline, (pipeline / "runs" / run_id).resolve(), process, log,
                 {"mode": "quick"})
    jobs.jobs[run_id] = job
    threading.Thread(target=job.watch, daemon=True).start()
    return job


def test_a_run_stopped_before_it_had_a_record_is_recorded_cancelled(
        cancel_pipeline: Path) -> None:
    """SIGTERM reached the run's process before it could take it (the default action ends
    it): the server makes the run's first record, cancelled, in run.json and the store."""
    run_id = new_run_id()
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    jobs = LabJobs()
    job = _lab_job(jobs, cancel_pipeline, process, run_id)
    assert jobs.cancel(run_id)
    assert job.ended.wait(60)
    assert process.returncode == -signal.SIGTERM
    record = json.loads((job.folder / "run.json").read_text(encoding="utf-8"))
    assert (record["status"], record["error"]) == ("cancelled", "cancelled from JupyterLab")
    assert [(s["name"], s["status"]) for s in record["steps"]] == [
        ("first", "cancelled"), ("slow", "cancelled"), ("last", "cancelled")]
    store = RunStore(default_store(cancel_pipeline))
    try:
        run = store.run(run_id)
    finally:
        store.close()
    assert run.status == "cancelled" and run.parameters == {"mode": "quick"}
    assert [(s.step, s.status) for s in run.steps] == [
        ("first", "cancelled"), ("slow", "cancelled"), ("last", "cancelled")]
    restarted = LabJobs()
    assert restarted.status(cancel_pipeline, run_id)["status"] == "cancelled"
    assert [(h["run_id"], h["status"]) for h in run_history(cancel_pipeline, restarted)] == [
        (run_id, "cancelled")]


def test_a_runner_killed_mid_step_is_recorded_cancelled_by_the_server(
        cancel_pipeline: Path) -> None:
    """The runner is killed outright while a step runs (as when a cancelled run outlives
    its grace): its record still says the step runs; the server finishes it."""
    jobs = LabJobs()
    job = jobs.start(cancel_pipeline, {"mode": "sleep"})
    deadline = time.monotonic() + 180
    while True:
        assert job.running and time.monotonic() < deadline, job.last_lines()
        try:
            steps = json.loads((job.folder / "run.json").read_text())["steps"]
        except (OSError, ValueError):
            steps = []
        if (cancel_pipeline.parent / "SLEEPING").is_file() and any(
                s["name"] == "slow" and s["status"] == "running" for s in steps):
            break
        time.sleep(0.1)
    below = psutil.Process(job.process.pid).children(recursive=True)
    with job.lock:  # cancelled, then killed before it could record it
        job.state = "cancelling"
        for process in [psutil.Process(job.process.pid), *below]:
            try:
                process.kill()
            except psutil.NoSuchProcess:  # a short-lived child ended since it was listed
                pass
    assert job.ended.wait(60)
    record = json.loads((job.folder / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "cancelled"
    assert [s["status"] for s in record["steps"]] == ["done", "cancelled", "cancelled"]
    store = RunStore(default_store(cancel_pipeline))
    try:
        run = store.run(job.run_id)
    finally:
        store.close()
    assert run.status == "cancelled"
    assert [s.status for s in run.steps] == ["done", "cancelled", "cancelled"]
    assert LabJobs().status(cancel_pipeline, job.run_id)["status"] == "cancelled"


# -- the runner: a SIGTERM at exact moments of its own ----------------------------------------

_SIGTERM_AT = textwrap.dedent('''
    import os, signal, sys
    from jupyter_mlops.run.runner import run_pipeline

    event, name = sys.argv[2], sys.argv[3]

    def listener(happened, run, step):
        if happened == event and step.name == name:
            os.kill(os.getpid(), signal.SIGTERM)

    result = run_pipeline(sys.argv[1], {"mode": "quick"}, listener=listener)
    print(result.run_id, result.status, flush=True)
''')


@pytest.mark.parametrize(("event", "step", "run_status"), [
    ("started", "first", "cancelled"), ("done", "first", "cancelled"),
    ("done", "last", "succeeded")])
def test_a_sigterm_at_a_step_boundary(cancel_pipeline: Path, tmp_path: Path, event: str,
                                      step: str, run_status: str) -> None:
    """As a step starts or ends (told by the run's listener, in the run's own process): the
    run is cancelled with every unfinished step; once the last step is done it succeeded,
    and the process still ends by the SIGTERM it was sent."""
    proc = subprocess.run([sys.executable, "-c", _SIGTERM_AT, str(cancel_pipeline), event,
                           step], capture_output=True, text=True, timeout=300, check=False)
    runs = sorted((cancel_pipeline / "runs").iterdir())
    assert len(runs) == 1, proc.stderr
    record = json.loads((runs[0] / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == run_status, (record, proc.stderr)
    assert_final(record, run_status, "run.json")
    if run_status == "succeeded":  # ended by the signal, or (seen first) with its record
        assert proc.returncode == -signal.SIGTERM or (
            proc.returncode == 0 and proc.stdout.split() == [runs[0].name, "succeeded"]), \
            proc.stderr
    else:
        assert proc.returncode == 0 and proc.stdout.split() == [runs[0].name, "cancelled"]
        assert record["error"].startswith("cancelled by SIGTERM; resume it with ")
    store = RunStore(default_store(cancel_pipeline))
    try:
        run = store.run(runs[0].name)
    finally:
        store.close()
    assert run.status == run_status
    assert [s.status for s in run.steps] == [s["status"] for s in record["steps"]]


# -- progress and failures as the sidebar shows them ------------------------------------------

def progress_notebook(root: Path) -> Path:
    """Step `work` is cells 4-7; cell 6 waits while HOLD exists, cell 7 fails."""
    return write_notebook(
        root / "work" / "progress.ipynb",
        "%%mlops setup\nimport os\nimport time",
        "%%mlops params\nn = 3",
        "%%mlops step prep\nvalues = list(range(n))",
        "%%mlops step work\ntotal = sum(values)",
        "doubled = total * 2",
        "while os.path.exists('HOLD'):\n    time.sleep(0.05)",
        "raise ValueError(f'bad total {doubled}')")


ABSOLUTE = re.compile(r"""(?:^|[\s`'"(=:,\[{])(/[^\s`'")\]},]+)""")


def absolute_paths(data: Any) -> list[str]:
    """Every absolute path in the texts (and keys) of ``data``."""
    return ABSOLUTE.findall(json.dumps(data))


async def test_progress_counts_the_steps_cells_and_a_failure_names_its_cells(
        jp_fetch: Any, jp_root_dir: Path) -> None:
    progress_notebook(jp_root_dir)
    code, data = await call(jp_fetch, "POST", "export", body={"path": "work/progress.ipynb"})
    assert code == 200, data
    hold = jp_root_dir / "work" / "HOLD"
    hold.write_text("")
    code, data = await call(jp_fetch, "POST", "runs",
                            body={"pipeline": "work/progress_pipeline"})
    assert code == 202, data
    run_id = data["run_id"]

    async def work() -> dict[str, Any]:
        steps = (await status(jp_fetch, run_id, "work/progress_pipeline"))["steps"]
        return steps[1] if steps else {}  # no record yet: the run is still starting

    async def waiting() -> bool:
        return (await work()).get("source_cell") == 6

    await until("step `work` to reach notebook cell 6", waiting)
    step = await work()
    # the third of the step's four cells, whatever the step notebook adds around them
    assert (step["status"], step["cell"], step["cells"], step["source_cell"]) == (
        "running", 3, 4, 6)
    assert step["cell_total"] > 4 and step["error_cell"] is None
    hold.unlink()

    async def failed() -> dict[str, Any] | None:
        shown = await status(jp_fetch, run_id, "work/progress_pipeline")
        return shown if shown["status"] == "failed" else None

    shown = await until("the run to fail", failed)
    prep, step = shown["steps"]
    assert (prep["status"], prep["cell"], prep["cells"], prep["source_cell"]) == (
        "done", 1, 1, None)
    assert (step["status"], step["cell"], step["cells"]) == ("failed", 4, 4)
    assert step["source_cell"] == step["error_cell"] == 7
    assert step["error"] == (f"step `work` failed at cell 7 of progress.ipynb: ValueError: bad "
                             f"total 6 (see {step['notebook_path']})")
    assert step["notebook_path"] == \
        f"work/progress_pipeline/runs/{run_id}/steps/02_work.ipynb"
    assert (jp_root_dir / step["notebook_path"]).is_file()
    assert shown["error"] == step["error"]
    # nothing names the server's own layout: every path is relative to its root
    assert str(jp_root_dir) not in json.dumps(shown)
    assert absolute_paths(shown) == [], absolute_paths(shown)
    assert shown["folder"] == f"work/progress_pipeline/runs/{run_id}"
    # as a restarted server shows it, and in the history
    root, pipeline = jp_root_dir.resolve(), jp_root_dir / "work/progress_pipeline"
    restarted = LabJobs().status(pipeline, run_id, root)
    assert absolute_paths(json.loads(json.dumps(restarted, default=str))) == []
    history = run_history(pipeline, LabJobs(), root=root)
    assert history[0]["error"] == step["error"] and absolute_paths(history) == []


# -- the debugger's frozen-modules warning ----------------------------------------------------

@pytest.mark.parametrize("kernel_pool", [True, False], ids=["forked", "fresh"])
def test_step_kernels_never_print_the_debuggers_frozen_modules_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_pool: bool) -> None:
    """In a kernel without -Xfrozen_modules=off, ipykernel's debugger warns on import; a
    step's output, its kernel's log and its error never show it, and a kernel that died
    silently is not said to have said it."""
    kernels = tmp_path / "jupyter" / "kernels" / "frozenpy"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(FROZEN_KERNEL), encoding="utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.delenv("PYDEVD_DISABLE_FILE_VALIDATION", raising=False)
    notebook = write_notebook(
        tmp_path / "quiet.ipynb", "%%mlops setup\nimport os",
        "%%mlops step look\nflag = os.environ.get('PYDEVD_DISABLE_FILE_VALIDATION')\n"
        "print('debugger validation off:', flag)",
        "%%mlops step die\nos._exit(3)\nafter = flag")
    done = run_cli("export", str(notebook))
    assert done.returncode == 0, done.stderr
    result = run_pipeline(tmp_path / "quiet_pipeline", options=RunOptions(
        kernel="frozenpy", kernel_pool=kernel_pool, runs_dir=tmp_path / "runs"))
    assert [s.status for s in result.steps] == ["done", "failed"]
    error = result.steps[1].error or ""
    assert "the kernel died" in error and "frozen modules" not in error
    assert "Debugger" not in error and "kernel's last output" not in error
    assert "debugger validation off: 1" in Path(result.steps[0].notebook).read_text()
    for path in result.folder.rglob("*"):
        if path.is_file():
            assert "frozen modules" not in path.read_text(errors="replace"), path


def test_a_log_of_only_the_debuggers_warning_says_nothing(tmp_path: Path) -> None:
    log = tmp_path / "kernel-step.log"
    log.write_text(
        "0.00s - Debugger warning: It seems that frozen modules are being used, which may\n"
        "0.00s - make the debugger miss breakpoints. Please pass -Xfrozen_modules=off\n"
        "0.00s - to python to disable frozen modules.\n"
        "0.00s - Note: Debugging will proceed. Set PYDEVD_DISABLE_FILE_VALIDATION=1 to "
        "disable this validation.\n")
    assert last_words(log) == ""
    with log.open("a") as handle:
        handle.write("Segmentation fault in libfoo\n0.01s - Note: Debugging will proceed.\n")
    assert last_words(log) == "Segmentation fault in libfoo"
