"""Kernels forked from a zygote: real kernels, real papermill runs, real forks.

A forked kernel must be the kernel the step would have had: the same answers to what a
notebook can ask (pandas' display width, matplotlib's backend, the shell, ``sys.argv``,
``sys.path``, the folder), BLAS and OpenMP working after the fork, its own random state,
the same executed notebooks. An import that could see that it is not in a kernel yet is
refused, and kernels then start as before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest
from test_kernelpool import _kernels, _notebook, _pipeline, _run

from jupyter_mlops.execution.forked import ForkedKernel
from jupyter_mlops.execution.kernelpool import KernelPool
from jupyter_mlops.execution.stepexec import KernelCommand
from jupyter_mlops.execution.zygote import launcher
from jupyter_mlops.runtime.artifacts import load

ARGUMENTS = ["--IPKernelApp.log_level=CRITICAL"]

PROBE = '''%%mlops setup
import gc, json, os, sys
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import psutil
from sklearn.ensemble import HistGradientBoostingClassifier


def probe(name):
    parent = psutil.Process(os.getppid()).cmdline()
    found = {
        "forked": any("zygote_main" in part for part in parent),
        "max_columns": pd.get_option("display.max_columns"),
        "backend": matplotlib.get_backend(),
        "shell": type(get_ipython()).__name__,
        "argv0": os.path.basename(sys.argv[0]),
        "path0": sys.path[0],
        "cwd": os.getcwd(),
        "environment": sorted(k for k in os.environ if k != "JPY_PARENT_PID"),
        "draw": float(np.random.random()),
        "frozen": gc.get_freeze_count(),
        "blas": float((np.ones((300, 300)) @ np.ones((300, 300)))[0, 0]),
        "openmp": int(HistGradientBoostingClassifier(max_iter=3).fit(
            np.arange(200.0).reshape(100, 2), np.arange(100) % 2).n_iter_),
    }
    path = os.path.join(os.environ["PROBE_DIR"], f"{name}.{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump(found, out)'''


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the kernels write what they found, and a site folder of odd modules."""
    folder = tmp_path / "probes"
    folder.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    # asks the running shell for its configuration on import: a stand-in cannot answer
    (site / "asks_mod.py").write_text(
        "ip = get_ipython()\nCONFIG = type(ip.config).__name__ if ip is not None else None\n")
    (site / "loud_mod.py").write_text("print('loud_mod says hello')\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("PROBE_DIR", str(folder))
    return folder


def _found(folder: Path, run: str) -> dict[str, dict[str, Any]]:
    """step -> what its kernel found, for the probes of one run (moved to ``run``)."""
    target = folder / run
    target.mkdir()
    found = {}
    for path in folder.glob("*.json"):
        found[path.name.split(".")[0]] = json.loads(path.read_text())
        path.rename(target / path.name)
    return found


@pytest.mark.kernel
def test_forked_kernels_answer_as_fresh_kernels_and_leave_the_same_notebooks(
        tmp_path: Path, probes: Path) -> None:
    pipeline = _pipeline(tmp_path / "project", PROBE,
                         "%%mlops step a\nprobe('a')\nx = 1",
                         "%%mlops step b\nprobe('b')\ny = 2",
                         "%%mlops step c\nprobe('c')\nz = x + y\nplt.plot([1, z])\nplt.show()",
                         "%mlops metrics z")
    seen: set[int] = set()
    forked = _run(pipeline, tmp_path / "forked", seen, jobs=2)
    ours = _found(probes, "forked")
    fresh = _run(pipeline, tmp_path / "fresh", jobs=2, force=True, kernel_pool=False)
    theirs = _found(probes, "fresh")
    assert forked.status == fresh.status == "succeeded", forked.error
    assert set(ours) == set(theirs) == {"a", "b", "c"}
    assert all(found["forked"] for found in ours.values())
    assert not any(found["forked"] for found in theirs.values())
    for step in ours:
        mine, expected = dict(ours[step]), dict(theirs[step])
        assert mine.pop("forked") != expected.pop("forked")
        mine.pop("draw"), expected.pop("draw")
        # what the zygote imported is kept from the collector in the kernels forked from it
        # (their full collections walk only their own objects), and in no other
        assert mine.pop("frozen") > 10_000 and expected.pop("frozen") == 0
        assert mine == expected, step
    # the same answers a kernel gives, BLAS and OpenMP work after the fork
    assert ours["c"]["max_columns"] == 20 and ours["c"]["shell"] == "ZMQInteractiveShell"
    assert ours["c"]["backend"] == "module://matplotlib_inline.backend_inline"
    assert ours["c"]["blas"] == 300.0 and ours["c"]["openmp"] == 3
    # each forked kernel draws its own random numbers, as a new interpreter would
    assert len({found["draw"] for found in ours.values()}) == 3
    for step in range(3):
        assert _notebook(forked, step) == _notebook(fresh, step)
    executed = nbformat.read(forked.steps[2].notebook, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    assert not any(_alive(p) for p in seen)


@pytest.mark.kernel
def test_an_import_that_could_tell_it_is_not_in_a_kernel_is_refused(
        tmp_path: Path, probes: Path) -> None:
    pipeline = _pipeline(tmp_path / "project", PROBE + "\nimport asks_mod",
                         "%%mlops step a\nprobe('a')\nx = asks_mod.CONFIG",
                         "%%mlops step b\nprobe('b')\ny = x")
    result = _run(pipeline, tmp_path / "runs", jobs=1)
    assert result.status == "succeeded", result.error
    found = _found(probes, "run")
    # the zygote refused asks_mod, so no kernel was forked; each imported it as a kernel
    assert not any(f["forked"] for f in found.values())
    # and asks_mod got the kernel's own configuration
    assert load("x", result.folder / "artifacts" / "a") == "Config"


def _pool(plan: list[tuple[str, tuple[str, ...], bool]], tmp_path: Path) -> KernelPool:
    """A pool of kernels working in a folder of their own (the site folder is not in it:
    modules of the notebook's own folder are never imported ahead)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    return KernelPool(KernelCommand("python3", str(workdir), tuple(ARGUMENTS)), 1, None,
                      lambda key: plan)


def _lease(pool: KernelPool, key: str) -> Any:
    kernel = pool.lease(key)
    assert kernel is not None
    manager = kernel.wait()
    assert manager is not None
    return kernel, manager


@pytest.mark.kernel
@pytest.mark.parametrize(("module", "why"), [("asks_mod", "asks_mod"),
                                             ("loud_mod", "printed")])
def test_the_zygote_refuses_modules_that_ask_or_print(tmp_path: Path, probes: Path,
                                                      module: str, why: str) -> None:
    pool = _pool([("json", (), False), (module, (), False)], tmp_path)
    try:
        kernel = pool.lease("a")
        assert kernel is not None
        manager = kernel.wait()
        # a kernel started afresh; for loud_mod its own warm-up printed too, so the step
        # would start one more (None), as without a zygote
        assert (manager is None) == (module == "loud_mod")
        assert manager is None or not isinstance(manager.provisioner.process, ForkedKernel)
        assert pool.zygote is not None and not pool.zygote.usable
        assert why in pool.zygote.why
        kernel.release()
    finally:
        pool.close()
    assert not _kernels()


@pytest.mark.kernel
def test_forked_kernels_end_with_the_run_even_when_the_zygote_dies(tmp_path: Path,
                                                                    probes: Path) -> None:
    pool = _pool([("json", (), False)], tmp_path)
    try:
        kernel, manager = _lease(pool, "a")
        process = manager.provisioner.process
        assert isinstance(process, ForkedKernel) and process.poll() is None
        assert pool.zygote is not None
        pool.zygote.kill()
        deadline = time.monotonic() + 10
        while _alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        # its parent gone, the kernel stops itself (ipykernel watches its parent)
        assert not _alive(process.pid)
        assert process.poll() is not None
        kernel.release()
    finally:
        pool.close()
    assert not _kernels()


@pytest.mark.kernel
def test_a_kernel_whose_environment_changed_is_not_forked(tmp_path: Path, probes: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    pool = _pool([("json", (), False)], tmp_path)
    try:
        first, manager = _lease(pool, "a")
        assert isinstance(manager.provisioner.process, ForkedKernel)
        # what the zygote imported saw the old environment: the next kernel starts afresh
        monkeypatch.setenv("MLOPS_TEST_CHANGED", "1")
        second, other = _lease(pool, "b")
        assert not isinstance(other.provisioner.process, ForkedKernel)
        first.release()
        second.release()
    finally:
        pool.close()
    assert not _kernels()


def test_only_plain_ipykernel_commands_are_forked() -> None:
    assert launcher(["/x/python", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f",
                     "{connection_file}"]) == (["/x/python", "-Xfrozen_modules=off"],
                                               ["-f", "{connection_file}"])
    assert launcher(["python", "-m", "ipykernel_launcher", "-f", "c.json"]) == (
        ["python"], ["-f", "c.json"])
    assert launcher(["conda", "run", "python", "-m", "ipykernel_launcher"]) is None
    assert launcher(["python", "-m", "ipykernel", "-f", "c.json"]) is None
    assert launcher(["R", "--slave", "-e", "IRkernel::main()"]) is None


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.kernel
def test_a_successor_zygote_imports_new_packages_while_the_first_goes_on_forking(
        tmp_path: Path, probes: Path) -> None:
    plans = {"a": [("json", (), False)], "b": [("json", (), False)],
             "c": [("json", (), False), ("xml.dom.minidom", (), False)]}
    workdir = tmp_path / "work"
    workdir.mkdir()
    pool = KernelPool(KernelCommand("python3", str(workdir), tuple(ARGUMENTS)), 1,
                      lambda: ["b", "c"], lambda key: plans[key])
    try:
        first, _ = _lease(pool, "a")
        zygote = pool.zygote
        assert zygote is not None and zygote.successor is not None
        # b needs no new package: the first zygote forks it; c needs xml: the successor
        second, b = _lease(pool, "b")
        third, c = _lease(pool, "c")
        parents = {key: psutil.Process(m.provisioner.process.pid).ppid()
                   for key, m in (("b", b), ("c", c))}
        assert parents == {"b": zygote.process.pid, "c": zygote.successor.pid}
        assert psutil.Process(zygote.successor.pid).ppid() == zygote.process.pid
        for kernel in (first, second, third):
            kernel.release()
    finally:
        pool.close()
    assert not _kernels()


@pytest.mark.kernel
def test_the_successor_imports_for_the_later_steps_beyond_those_the_pool_starts_kernels_for(
        tmp_path: Path, probes: Path) -> None:
    """A Dask worker's pool starts kernels for a chain's next steps only (``planner``); its
    successor imports for every step still expected (``later``): c's new package."""
    plans = {"a": [("json", (), False)], "b": [("json", (), False)],
             "c": [("json", (), False), ("xml.dom.minidom", (), False)]}
    workdir = tmp_path / "work"
    workdir.mkdir()
    pool = KernelPool(KernelCommand("python3", str(workdir), tuple(ARGUMENTS)), 1,
                      lambda: ["b"], lambda key: plans[key])
    pool.later = lambda: ["b", "c"]
    try:
        first, _ = _lease(pool, "a")
        zygote = pool.zygote
        assert zygote is not None and zygote.successor is not None
        assert ("xml.dom.minidom", (), False) in zygote.successor.imported
        first.release()
    finally:
        pool.close()
    assert not _kernels()


@pytest.mark.kernel
def test_a_forked_kernel_whose_port_was_taken_ends_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports are chosen before a kernel binds them; one taken in between (by any process of
    the machine) must end that kernel at once, not leave it hanging in ipykernel's exit
    functions until the start times out, and the pool then starts one afresh."""
    import socket

    from jupyter_client.provisioning import local_provisioner

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    find = local_provisioner.LocalPortCache.find_available_port
    asked: list[str] = []

    def iopub_is_taken(cache: Any, ip: str) -> int:
        asked.append(ip)
        # the first kernel's IOPub port (shell, iopub, stdin, hb, control): its shell socket
        # is bound and open when the IOPub bind fails, which ending ZeroMQ waits for
        return port if len(asked) == 2 else find(cache, ip)

    monkeypatch.setattr(local_provisioner.LocalPortCache, "find_available_port", iopub_is_taken)
    pool = _pool([("json", (), False)], tmp_path)
    try:
        started = time.monotonic()
        kernel = pool.lease("a")
        assert kernel is not None
        manager = kernel.wait()
        waited = time.monotonic() - started
        assert pool.zygote is not None, "the kernel was not forked: nothing tested"
        # dead at once: the pool gives no kernel (the step starts its own) well before the
        # 60 s a kernel may take to start
        assert manager is None
        assert waited < 30, f"a kernel that could not bind waited {waited:.0f} s"
        kernel.release()
    finally:
        pool.close()
        taken.close()
    assert not _kernels()


def test_a_kernel_ending_as_it_is_signalled_is_no_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """jupyter_client signals a kernel it shuts down and lets an error of the signal through:
    a forked kernel that ended between the look and the signal (a race a full disk's failed
    run met in CI: "No such process") is simply not signalled, as ``Popen`` has it. The
    kernel here is a process that has ended, looked at as if it still ran (the race, made
    to happen: no zygote is needed for it)."""
    ended = subprocess.Popen(["true"])
    ended.wait()
    kernel = ForkedKernel.__new__(ForkedKernel)
    kernel.pid, kernel.returncode = ended.pid, None
    monkeypatch.setattr(kernel, "poll", lambda: None)
    kernel.send_signal(signal.SIGTERM)
    kernel.kill()


def test_a_zygote_ending_as_it_is_killed_is_no_error() -> None:
    """The zygote may end, and its channel's reader reap it, between the run's look and its
    kill at the run's end: nothing is left to kill, and the run's end says nothing of it.
    (The zygote here is a process that has ended, looked at as if it still ran.)"""
    from types import SimpleNamespace

    from jupyter_mlops.execution.zygote import Zygote

    ended = subprocess.Popen(["true"], start_new_session=True)
    ended.wait()
    zygote = Zygote.__new__(Zygote)
    zygote.first = SimpleNamespace(usable=True, pid=ended.pid)
    zygote.successor = None
    zygote.process = SimpleNamespace(poll=lambda: None)
    zygote.kill()
    assert zygote.first.usable is False
