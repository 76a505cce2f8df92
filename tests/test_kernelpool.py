"""Kernels started ahead: real kernels, real papermill, the runner in this process.

A marker module, importable by the kernels (``PYTHONPATH``) but outside the notebook's
folder, writes its kernel's pid and the time it was imported to a log: that tells when each
kernel started and imported its step's setup, against the run's own times.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from conftest import build_notebook, write_notebook
from test_engine import MARKER, normal

from jupyter_mlops.execution.stepexec import warm_plan
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.run.results import RunResult
from jupyter_mlops.run.runner import run_pipeline

CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


@pytest.fixture
def marker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The log the marker module writes ``PID TIME`` lines to, one per kernel importing it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "marker_mod.py").write_text(
        "import os, time\n"
        "with open(os.environ['MARKER_LOG'], 'a') as log:\n"
        "    log.write(f'{os.getpid()} {time.time()}\\n')\n")
    # warns when imported: what a warm-up must not swallow
    (site / "warn_mod.py").write_text("import warnings\nwarnings.warn('warn_mod is old')\n")
    # fails the first time it is imported, on any kernel: a warm-up that fails
    (site / "flaky_mod.py").write_text(
        "import os\nflag = os.environ['MARKER_LOG'] + '.flaky'\n"
        "if not os.path.exists(flag):\n"
        "    open(flag, 'w').close()\n"
        "    raise ImportError('flaky_mod: first import fails')\n")
    log = tmp_path / "marker.log"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("MARKER_LOG", str(log))
    return log


def _imported(log: Path) -> dict[int, float]:
    """pid -> when that kernel imported the marker module."""
    lines = log.read_text().split("\n") if log.exists() else []
    return {int(p): float(t) for p, t in (line.split() for line in lines if line)}


def _pipeline(folder: Path, *cells: Any) -> Path:
    nb = write_notebook(folder / "flow.ipynb", *cells)
    export(nb)
    return folder / "flow_pipeline"


def _kernels() -> set[int]:
    """The kernel processes under this test process, and the zygotes they are forked from."""
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if any("ipykernel" in part or "zygote_main" in part for part in child.cmdline()):
                found.add(child.pid)
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _run(pipeline: Path, runs: Path, seen: set[int] | None = None, **kwargs: Any) -> RunResult:
    """Run in this process; ``seen`` collects every kernel alive at any step event."""

    def listener(event: str, result: RunResult, step: Any) -> None:
        if seen is not None:
            seen.update(_kernels())

    result = run_pipeline(pipeline, runs_dir=runs, listener=listener, **kwargs)
    assert not _kernels(), "a kernel outlived its run"
    return result


def _notebook(result: RunResult, step: int) -> dict[str, Any]:
    """An executed step notebook, with the run's own folder (parameters) blanked."""
    path = Path(result.steps[step].notebook)
    text = path.read_text().replace(str(result.folder), "RUN")
    return normal(json.loads(text))


# -- what may be imported ahead ------------------------------------------------------------

def test_warm_plan_stops_before_anything_that_could_change_an_import(tmp_path: Path) -> None:
    def plan(*cells: Any) -> list[str]:
        nb = build_notebook(*cells)
        nbformat.write(nb, str(tmp_path / "s.ipynb"))
        return [name for name, _, _ in warm_plan(tmp_path / "s.ipynb")]

    assert plan("import numpy as np\nfrom os import path",
                "'''doc'''\nLIMIT: int = 3\ndef f(x=np.pi):\n    return os.environ['X']",
                "try:\n    import yaml\nexcept ImportError:\n    yaml = None",
                "%load_ext jupyter_mlops\nimport json") == [
        "numpy", "os", "yaml", "jupyter_mlops.ipython.magics", "json"]
    # a call may set an environment variable that an import reads (a backend, threads)
    assert plan("import os", "os.environ['KERAS_BACKEND'] = 'jax'\nimport keras") == ["os"]
    assert plan("import sys\nsys.path.insert(0, 'lib')\nimport helpers") == ["sys"]
    assert plan("import a", "%env X=1\nimport b") == ["a"]
    assert plan("import a", "%%time\nimport b") == ["a"]
    assert plan("import a", "files = !ls\nimport b") == ["a"]
    assert plan("import a\nfrom . import sibling\nimport b") == ["a"]
    assert plan("import a\n@decorate\ndef f():\n    pass\nimport b") == ["a"]
    optional = warm_plan(tmp_path / "s.ipynb")  # the last one written: all required
    assert all(not flag for _, _, flag in optional)


def test_step_notebook_plan_includes_what_loading_its_inputs_needs(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, "%%mlops setup\nimport pandas as pd",
                         "%%mlops step a\nframe = pd.DataFrame({'x': [1]})",
                         "%%mlops step b\nframe['y'] = 2\nprint(frame)")
    plan = [(name, names) for name, names, _ in warm_plan(pipeline / "steps" / "02_b.ipynb",
                                                          {"data"})]
    # in the step's own order: the runtime check, setup, the inputs cell's import, what
    # loading a frame imports; the step's own code (`frame['y'] = 2`) is where looking stops
    assert plan == [("jupyter_mlops.runtime", ()), ("pandas", ()),
                    ("jupyter_mlops.runtime.artifacts", ("load_inputs",)),
                    ("pyarrow.feather", ())]
    assert [n for n, _, _ in warm_plan(pipeline / "steps" / "02_b.ipynb", {"model"})][-1] \
        == "skops.io"
    # step a loads nothing; what saving its frame imports comes after its code: not ahead
    assert [n for n, _, _ in warm_plan(pipeline / "steps" / "01_a.ipynb", set())] == [
        "jupyter_mlops.runtime", "pandas"]


# -- the pool at work ------------------------------------------------------------------------

SLOW_THEN_QUICK = ("%%mlops setup\nimport os\nimport time\nimport marker_mod",
                   "%%mlops step a\ntime.sleep(5)\nx = 1",
                   "%%mlops step b\ny = x + 1",
                   "%%mlops metrics result kernel_pid kernel_parent kernel_grandparent "
                   "kernel_born\nresult = y\n"
                   "kernel_pid, kernel_parent = os.getpid(), os.getppid()\n"
                   "import psutil\nkernel_born = psutil.Process().create_time()\n"
                   "kernel_grandparent = psutil.Process(kernel_parent).ppid()")


@pytest.mark.kernel
@pytest.mark.parametrize("jobs", [1, 2])
def test_next_kernel_starts_and_imports_while_the_step_before_runs(
        tmp_path: Path, marker: Path, jobs: int) -> None:
    pipeline = _pipeline(tmp_path / "project", *SLOW_THEN_QUICK)
    seen: set[int] = set()
    result = _run(pipeline, tmp_path / "runs", seen, jobs=jobs)
    assert result.status == "succeeded", result.error
    a, b = result.steps
    pid = b.outputs["kernel_pid"]["value"]
    imported = _imported(marker)
    # b's kernel existed, and had imported b's setup, while a was still sleeping: itself,
    # or the zygote it was forked from (or that zygote's parent, for a successor zygote)
    assert b.outputs["kernel_born"]["value"] < a.ended
    importers = [pid, *(b.outputs[f"kernel_{k}"]["value"] for k in ("parent", "grandparent"))]
    assert min(imported[p] for p in importers if p in imported) < a.ended
    assert b.outputs["result"]["value"] == 2
    assert seen and pid in seen
    assert not any(_alive(p) for p in [*seen, *imported])
    # its notebook ran every cell itself, setup included, numbered from 1 as in a new kernel
    executed = nbformat.read(b.notebook, as_version=4)
    setup = next(c for c in executed.cells if c.get("id", "").startswith("mlops-setup"))
    assert setup.metadata.papermill["status"] == "completed"
    counts = [c.execution_count for c in executed.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1))


@pytest.mark.kernel
def test_without_the_pool_each_kernel_starts_with_its_step(tmp_path: Path,
                                                            marker: Path) -> None:
    pipeline = _pipeline(tmp_path / "project", *SLOW_THEN_QUICK)
    result = _run(pipeline, tmp_path / "runs", jobs=1, kernel_pool=False)
    assert result.status == "succeeded", result.error
    a, b = result.steps
    assert _imported(marker)[b.outputs["kernel_pid"]["value"]] > a.ended


@pytest.mark.kernel
def test_cli_no_pool_starts_each_kernel_with_its_step(tmp_path: Path, marker: Path) -> None:
    from conftest import run_cli

    from jupyter_mlops.run.store import RunStore, default_store

    pipeline = _pipeline(tmp_path / "project", *SLOW_THEN_QUICK)
    done = run_cli("run", str(pipeline), "-j", "1", "--no-pool")
    assert done.returncode == 0, done.stderr
    store = RunStore(default_store(pipeline))
    run = store.runs(1)[0]
    store.close()
    a_ended = run.steps[0].ended
    assert _imported(marker)[int(run.metrics["kernel_pid"])] > a_ended


@pytest.mark.kernel
def test_pooled_runs_leave_the_same_notebooks_and_results(tmp_path: Path,
                                                          marker: Path) -> None:
    pipeline = _pipeline(
        tmp_path / "project",
        "%%mlops setup\nimport json\nimport time\nimport marker_mod\nimport numpy as np",
        "%%mlops params\nn: int = 3",
        "%%mlops step make\nprint('making', n)\ntime.sleep(5)\nvalues = np.arange(n) * 2\n"
        "values.tolist()",
        "%%mlops step use\nimport sys\nprint('using', file=sys.stderr)\n"
        "total = int(values.sum())\njson.dumps({'total': total})",
        "%%mlops metrics total")
    pooled = _run(pipeline, tmp_path / "pooled", parameters={"n": 5}, jobs=1)
    # `use` ran in a kernel that had imported its setup before the step began (or was
    # forked from a zygote that had: one import then serves both steps)
    ahead = _imported(marker).values()
    assert ahead and len(ahead) <= 2 and all(t < pooled.steps[1].started for t in ahead)
    fresh = _run(pipeline, tmp_path / "fresh", parameters={"n": 5}, jobs=1, force=True,
                 kernel_pool=False)
    assert pooled.status == fresh.status == "succeeded"
    assert pooled.steps[1].outputs["total"]["value"] == 20
    for step in range(2):
        ours, theirs = _notebook(pooled, step), _notebook(fresh, step)
        assert ours == theirs
    assert ours["metadata"]["papermill"]["parameters"]["mlops_step"] == "use"
    assert _notebook(pooled, 0)["metadata"]["papermill"]["parameters"]["n"] == 5
    hashes = [{n: o["sha256"] for n, o in s.outputs.items()} for s in (pooled.steps[0],
                                                                       fresh.steps[0])]
    assert hashes[0] == hashes[1]


@pytest.mark.kernel
def test_a_warm_up_that_warns_or_fails_falls_back_to_a_fresh_kernel(tmp_path: Path,
                                                                     marker: Path) -> None:
    pipeline = _pipeline(tmp_path / "project",
                         "%%mlops setup\nimport flaky_mod\nimport warn_mod",
                         "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1",
                         "%mlops metrics y")
    result = _run(pipeline, tmp_path / "runs", jobs=1)
    assert result.status == "succeeded", result.error
    assert result.steps[1].outputs["y"]["value"] == 2
    for step in result.steps:
        executed = nbformat.read(step.notebook, as_version=4)
        setup = next(c for c in executed.cells if c.get("id", "").startswith("mlops-setup"))
        # the warning is in each step's output, as in a kernel that imports it for the
        # first time: a warm-up that printed it is not used
        assert "warn_mod is old" in "".join(o.get("text", "") for o in setup.outputs)


# -- failures, timeouts, interrupts: no kernel is left behind ----------------------------

@pytest.mark.kernel
def test_failing_and_timed_out_steps_are_marked_and_stop_every_kernel(
        tmp_path: Path, marker: Path) -> None:
    head = ("%%mlops setup\nimport time\nimport marker_mod", "%%mlops step a\nx = 1")
    tail = ("%%mlops step c\nz = y + 1", "%mlops metrics z")
    failing = _pipeline(tmp_path / "failing", *head,
                        "%%mlops step b\nif x == 1:\n    raise ValueError('bad value')\ny = x",
                        *tail)
    slow = _pipeline(tmp_path / "slow", *head, "%%mlops step b\ntime.sleep(60)\ny = x", *tail)
    seen: set[int] = set()
    for pipeline, timeout, reason in ((failing, None, "ValueError: bad value"),
                                      (slow, 2.0, "time limit of 2 s")):
        result = _run(pipeline, tmp_path / "runs", seen, jobs=1, cell_timeout=timeout)
        assert result.status == "failed"
        assert [s.status for s in result.steps] == ["done", "failed", "not run"]
        assert reason in (result.steps[1].error or "")
        executed = nbformat.read(result.steps[1].notebook, as_version=4)
        assert MARKER in executed.cells[0].metadata.get("tags", [])  # papermill's banner
        failed = [c for c in executed.cells if c.metadata.get("papermill", {}).get("exception")]
        assert len(failed) == 1 and failed[0].id == "mlops-cell-3"
    # every kernel, those of the steps and any started for step c, is gone
    assert seen
    assert not any(_alive(p) for p in [*seen, *_imported(marker)])


@pytest.mark.kernel
def test_ctrl_c_stops_the_run_and_every_kernel_at_once(tmp_path: Path, marker: Path) -> None:
    pipeline = _pipeline(tmp_path / "project",
                         "%%mlops setup\nimport time\nimport marker_mod",
                         "%%mlops step a\nx = 1", "%%mlops step b\ntime.sleep(120)\ny = x",
                         "%%mlops step c\nz = y + 1", "%mlops metrics z")
    runs = tmp_path / "runs"
    proc = subprocess.Popen([*CLI, "run", str(pipeline), "-j", "1", "--runs-dir", str(runs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, "b never ran"
            records = list(runs.glob("*/run.json"))
            try:
                steps = json.loads(records[0].read_text())["steps"] if records else []
            except ValueError:
                steps = []
            if steps and steps[1]["status"] == "running" and steps[1]["cell_index"]:
                break
            time.sleep(0.1)
        time.sleep(1)  # inside time.sleep(120)
        kernels = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(kernels) >= 2  # b's, and the one started for c
        interrupted = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
        assert time.monotonic() - interrupted < 30  # not after b's two minutes
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr
        time.sleep(0.5)
        assert not any(_alive(p) for p in kernels)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_step_taken_is_never_prepared_again(tmp_path: Path) -> None:
    """A refill lists the steps still expected, then starts kernels for them on the pool's
    own thread: a step leased or found in the cache meanwhile gets no kernel after, which
    would have waited unused to the run's end, holding a place of the pool."""
    import asyncio

    from jupyter_mlops.execution.kernelpool import KernelPool
    from jupyter_mlops.execution.stepexec import KernelCommand

    pool = KernelPool(KernelCommand("python3", str(tmp_path), ()), 2, None, lambda key: [],
                      fork=False)
    try:
        pool.discard("cached")
        pool.prepare("cached")  # as the refill listed it, before it was discarded
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), pool._loop).result(10)
        assert pool.kernels == []
        # a Dask worker's kernel no longer expected there may be asked for again later
        pool.discard("stale", taken=False)
        pool.prepare("stale")
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), pool._loop).result(10)
        assert [k.key for k in pool.kernels] == ["stale"]
    finally:
        pool.close()
