"""--executor dask on a real distributed.LocalCluster (process workers, loopback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import run_cli, write_notebook

pytestmark = pytest.mark.kernel

CLUSTER = """
import sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                       host="127.0.0.1", dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # serve until the test closes our stdin
cluster.close()
"""


#: The temporary folder of the cluster's workers (:func:`scheduler`): the files a run's
#: workers share a zygote by (:mod:`.hostshare`) are this module's alone.
WORKERS_TMP: list[Path] = []


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    temp = Path(tempfile.mkdtemp(prefix="mlk-", dir="/tmp"))  # short: sockets are named there
    WORKERS_TMP[:] = [temp]
    try:
        yield from _cluster(temp)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _cluster(temp: Path) -> Iterator[str]:
    # the cluster lives in its own process, as a real one would
    proc = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=dict(os.environ, TMPDIR=str(temp)))
    try:
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:"), address
        yield address
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()


def _record(folder: Path) -> dict:
    (run,) = folder.iterdir()
    return json.loads((run / "run.json").read_text())


def test_dask_runs_match_the_local_executor(tmp_path: Path, scheduler: str, cli) -> None:
    write_notebook(tmp_path / "d.ipynb", "%%mlops params\nn = 5",
                   "%%mlops step make\nimport numpy as np\nbase = np.arange(n)",
                   "%%mlops step left\nimport time\ntime.sleep(1)\nleft = float(base.sum())",
                   "%%mlops step right\nimport time\ntime.sleep(1)\nright = base * 2",
                   "%%mlops step join\ntotal = left + float(right.sum())",
                   "%mlops metrics total")
    assert cli("export", str(tmp_path / "d.ipynb")).returncode == 0
    pipeline = tmp_path / "d_pipeline"
    remote = cli("run", str(pipeline), "--executor", "dask", "--scheduler", scheduler,
                 "--store", str(tmp_path / "dask.sqlite"), "--runs-dir", str(tmp_path / "r1"))
    assert remote.returncode == 0, remote.stderr
    local = cli("run", str(pipeline), "--store", str(tmp_path / "local.sqlite"),
                "--runs-dir", str(tmp_path / "r2"))
    assert local.returncode == 0, local.stderr
    a, b = _record(tmp_path / "r1"), _record(tmp_path / "r2")
    assert [s["status"] for s in a["steps"]] == ["done"] * 4
    assert a["steps"][3]["outputs"]["total"]["value"] == 30.0
    hashes = [{n: m["sha256"] for n, m in s["outputs"].items()} for s in a["steps"]]
    assert hashes == [{n: m["sha256"] for n, m in s["outputs"].items()} for s in b["steps"]]
    steps = {s["name"]: s for s in a["steps"]}
    # two workers: the independent branches overlap in time
    assert steps["right"]["started"] < steps["left"]["ended"]
    assert steps["left"]["started"] < steps["right"]["ended"]


def test_a_failing_step_on_dask_is_reported_like_a_local_one(tmp_path: Path, scheduler: str,
                                                              cli) -> None:
    write_notebook(tmp_path / "f.ipynb", "%%mlops step a\nx = 1",
                   "%%mlops step b\nraise ValueError('remote boom')")
    assert cli("export", str(tmp_path / "f.ipynb")).returncode == 0
    done = cli("run", str(tmp_path / "f_pipeline"), "--executor", "dask", "--scheduler",
               scheduler)
    assert done.returncode == 1
    assert "step `b` failed at cell 2 of f.ipynb: ValueError: remote boom" in done.stderr


def test_dask_needs_a_scheduler_address(tmp_path: Path, cli) -> None:
    write_notebook(tmp_path / "s.ipynb", "%%mlops step a\nx = 1")
    assert cli("export", str(tmp_path / "s.ipynb")).returncode == 0
    done = cli("run", str(tmp_path / "s_pipeline"), "--executor", "dask")
    assert done.returncode == 2
    assert "--scheduler: the Dask executor needs the address of a scheduler" in done.stderr
    unreachable = cli("run", str(tmp_path / "s_pipeline"), "--executor", "dask",
                      "--scheduler", "tcp://127.0.0.1:9")
    assert unreachable.returncode == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr
    malformed = cli("run", str(tmp_path / "s_pipeline"), "--executor", "dask",
                    "--scheduler", "nonsense")
    assert malformed.returncode == 2
    assert "cannot reach the Dask scheduler at nonsense" in malformed.stderr


def _kernels_on_workers(scheduler: str) -> list[list[str]]:
    """The command lines of the kernel processes each worker has running (and of the
    zygotes they are forked from: a forked kernel keeps its zygote's command line)."""
    from distributed import Client

    def kernels() -> list[str]:
        import psutil

        lines = []
        for child in psutil.Process().children(recursive=True):
            try:
                lines.append(" ".join(child.cmdline()))
            except psutil.Error:  # ended since it was listed (a kernel shutting down)
                continue
        return [line for line in lines if "ipykernel" in line or "zygote_main" in line]

    with Client(scheduler, timeout=10) as client:
        return list(client.run(kernels).values())


# when the kernel process started, from /proc (psutil's figure can be a second off)
BORN = ("import os, time\nwith open('/proc/self/stat') as f:\n"
        "    ticks = int(f.read().rsplit(')', 1)[1].split()[19])\n"
        "with open('/proc/uptime') as f:\n"
        "    age = float(f.read().split()[0]) - ticks / os.sysconf('SC_CLK_TCK')\n"
        "born_{} = time.time() - age")


def _steps_on_dask(tmp_path: Path, scheduler: str, cli, name: str, *cells: str
                   ) -> dict[str, dict]:
    """Export notebook ``name`` of ``cells`` and run it on the cluster: its steps' records."""
    write_notebook(tmp_path / f"{name}.ipynb", *cells)
    assert cli("export", str(tmp_path / f"{name}.ipynb")).returncode == 0
    done = cli("run", str(tmp_path / f"{name}_pipeline"), "--executor", "dask", "--scheduler",
               scheduler, "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    return {s["name"]: s for s in _record(tmp_path / "runs")["steps"]}


def test_workers_start_the_next_kernel_ahead(tmp_path: Path, scheduler: str, cli) -> None:
    """While a step runs, its worker starts the next step's kernel; the run's end shuts
    every such kernel down."""
    steps = _steps_on_dask(
        tmp_path, scheduler, cli, "w", "%%mlops step a\n" + BORN.format("a"),
        "%%mlops step b\nimport time\ntime.sleep(2)\n" + BORN.format("b") + "\nseen = [born_a]",
        "%%mlops step c\n" + BORN.format("c") + "\ntimes = seen + [born_b, born_c]",
        "%%mlops step d\nprint(times)")
    born_a, born_b, born_c = steps["c"]["outputs"]["times"]["value"]
    assert born_a > steps["a"]["started"]  # the first kernel starts with its step
    # the kernels of b and c were running before the steps before them had ended
    assert born_b < steps["a"]["ended"]
    assert born_c < steps["b"]["ended"]
    assert _kernels_on_workers(scheduler) == [[], []]


def test_a_chain_finds_the_kernels_of_its_next_two_steps_started(tmp_path: Path,
                                                                 scheduler: str, cli) -> None:
    """While a step of a chain runs, its worker starts the kernels of the two steps after
    it: a short step next finds the kernel of the one after started too."""
    steps = _steps_on_dask(
        tmp_path, scheduler, cli, "k", "%%mlops step a\nimport time\ntime.sleep(3)\nx = 1",
        "%%mlops step b\n" + BORN.format("b") + "\ny = [x, born_b]",
        "%%mlops step c\n" + BORN.format("c") + "\nz = y + [born_c]", "%%mlops step d\nprint(z)")
    _, born_b, born_c = steps["c"]["outputs"]["z"]["value"]
    assert born_b < steps["a"]["ended"] and born_c < steps["a"]["ended"]
    assert _kernels_on_workers(scheduler) == [[], []]


def test_only_steps_that_wait_for_a_step_are_started_two_ahead(tmp_path: Path, cli) -> None:
    """Beyond the next step, a worker starts kernels only for steps that wait for the one it
    runs: another step may start on another worker before it ends."""
    from jupyter_mlops.execution.daskplan import upcoming_after

    write_notebook(tmp_path / "t.ipynb", "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1",
                   "%%mlops step c\nz = 5", "%%mlops step d\nw = y + z")
    assert cli("export", str(tmp_path / "t.ipynb")).returncode == 0
    steps = sorted(str(p) for p in (tmp_path / "t_pipeline" / "steps").glob("*.ipynb"))
    a, b, c, d = steps
    upcoming, waiting, descendants = upcoming_after(a, {a})
    assert (upcoming, waiting, descendants) == ([b, c, d], 1, {b, d})
    assert upcoming_after(c, {a, c}) == ([d, b], 1, {d})  # those waiting for it first


def test_the_spec_is_read_once_until_a_new_export_replaces_it(tmp_path: Path, cli) -> None:
    """The executor asks for a step's spec several times per step: it is read once, and
    again when its file changes (a new export), never an old spec for a changed file."""
    from jupyter_mlops.execution.daskplan import spec_of, upcoming_after

    write_notebook(tmp_path / "t.ipynb", "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1")
    assert cli("export", str(tmp_path / "t.ipynb")).returncode == 0
    a, b = sorted(str(p) for p in (tmp_path / "t_pipeline" / "steps").glob("*.ipynb"))
    first = spec_of(a)
    assert first is not None and spec_of(b)[0] is first[0]  # the same object: not read again
    write_notebook(tmp_path / "t.ipynb", "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1",
                   "%%mlops step c\nz = y + 1")
    assert cli("export", str(tmp_path / "t.ipynb")).returncode == 0
    assert [s.name for s in spec_of(a)[0].steps] == ["a", "b", "c"]
    c = str(tmp_path / "t_pipeline" / "steps" / "03_c.ipynb")
    assert upcoming_after(a, {a})[0] == [b, c]
    spec = tmp_path / "t_pipeline" / "pipeline.yaml"
    # the same size, time and (reused) inode as the spec read last: its bytes tell it apart
    known, stat = spec.read_text(encoding="utf-8"), spec.stat()
    changed = known.replace("name: t\n", "name: u\n", 1)
    assert changed != known and len(changed) == len(known)
    spec.write_text(changed, encoding="utf-8")
    os.utime(spec, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert spec_of(a)[0].name == "u"
    spec.write_text("not: [a spec", encoding="utf-8")
    assert spec_of(a) is None  # unreadable now: not the spec read before


def test_the_specs_asked_for_last_are_kept(tmp_path: Path, cli) -> None:
    """Nine pipelines asked for in turn, one of them between each: that one is never parsed
    again, while the cache holds eight."""
    from jupyter_mlops.execution import daskplan

    write_notebook(tmp_path / "t.ipynb", "%%mlops step a\nx = 1")
    assert cli("export", str(tmp_path / "t.ipynb")).returncode == 0
    text = (tmp_path / "t_pipeline" / "pipeline.yaml").read_bytes()
    notebooks = []
    for n in range(daskplan.KEPT + 1):
        (tmp_path / f"p{n}").mkdir()
        (tmp_path / f"p{n}" / "pipeline.yaml").write_bytes(text)
        notebooks.append(str(tmp_path / f"p{n}" / "steps" / "01_a.ipynb"))
    kept = daskplan.spec_of(notebooks[0])[0]
    for notebook in notebooks[1:]:
        assert daskplan.spec_of(notebook) is not None
        assert daskplan.spec_of(notebooks[0])[0] is kept
    assert len(daskplan._SPECS) == daskplan.KEPT


def _zygotes_per_worker(scheduler: str) -> list[int]:
    """How many zygote processes each worker has running."""
    return [sum("zygote_main" in k for k in kernels) for kernels in _kernels_on_workers(scheduler)]


def _zygote_sources(scheduler: str) -> list[list[tuple[str, int]]]:
    """Where each worker's zygotes came from (:attr:`.zygote.Zygote.source`: "" started
    there, "shared" forked from another worker's, "warm" from an earlier run's), and their
    pids (a shared one is no descendant of its worker's: only its pid tells it ended)."""
    from distributed import Client

    def sources() -> list[tuple[str, int]]:
        from jupyter_mlops.execution import daskworker

        with daskworker._LOCK:
            pools = list(daskworker._POOLS.values())
        return [(pool.zygote.source, pool.zygote.first.pid) for pool in pools
                if pool.zygote is not None]

    with Client(scheduler, timeout=10) as client:
        return list(client.run(sources).values())


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended and not yet reaped, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: set[int], within: float = 10.0) -> bool:
    """Whether every process of ``pids`` has ended within ``within`` seconds."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not any(_alive(pid) for pid in pids)


def _run_files() -> set[str]:
    """The files of runs sharing a zygote between the cluster's workers (:mod:`.hostshare`)."""
    return {p.name for p in WORKERS_TMP[0].glob(f"jupyter-mlops-{os.getuid()}/r-*")}


def test_every_worker_starts_its_zygote_when_the_first_step_is_sent(tmp_path: Path,
                                                                    scheduler: str) -> None:
    """One step, one worker to run it: the other gets its zygote too, so a branch that
    reaches it later forks a kernel at once; on this one machine it is forked from the
    first step's worker's rather than importing beside it. A pipeline given by a relative
    path runs (workers work in folders of their own). The run's end stops every zygote and
    removes what the sharing used."""
    write_notebook(tmp_path / "one.ipynb", "%%mlops step a\nimport time\ntime.sleep(4)\nx = 1")
    assert run_cli("export", str(tmp_path / "one.ipynb")).returncode == 0
    env = dict(os.environ, JUPYTER_MLOPS_KEEP_WARM="0")
    run = subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "run", "one_pipeline",
                            "--executor", "dask", "--scheduler", scheduler, "--runs-dir",
                            "runs"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    seen: list[list[list[str]]] = []
    while run.poll() is None:
        seen.append(_zygote_sources(scheduler))
        time.sleep(0.3)
    out, err = run.communicate()
    assert run.returncode == 0, out + err
    assert any(sorted(s for w in sources for s, _ in w) == ["", "shared"]
               for sources in seen), seen
    assert _record(tmp_path / "runs")["status"] == "succeeded"
    assert _zygotes_per_worker(scheduler) == [0, 0]
    zygotes = {pid for sources in seen for w in sources for _, pid in w}
    assert len(zygotes) == 2 and _wait_gone(zygotes), [_alive(p) for p in zygotes]
    deadline = time.monotonic() + 10  # the keeper removes its socket as it ends
    while _run_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _run_files()


def test_two_branches_get_their_kernels_on_two_workers_ahead(tmp_path: Path, scheduler: str,
                                                             cli) -> None:
    """While the step both branches wait for runs, its worker starts one branch's kernel and
    the other worker the other's: neither branch waits for a kernel to start."""
    steps = _steps_on_dask(
        tmp_path, scheduler, cli, "v", "%%mlops step a\nimport time\ntime.sleep(3)\nx = 1",
        "%%mlops step b\n" + BORN.format("b") + "\ny = x + born_b",
        "%%mlops step c\n" + BORN.format("c") + "\nz = x + born_c", "%%mlops step d\nprint(y, z)")
    spec = (tmp_path / "v_pipeline" / "pipeline.yaml").read_text()
    assert "after:\n  - a" in spec or "- a" in spec  # b and c both wait for a only
    born_b = steps["b"]["outputs"]["y"]["value"] - 1
    born_c = steps["c"]["outputs"]["z"]["value"] - 1
    assert born_b < steps["a"]["ended"] and born_c < steps["a"]["ended"]
    assert _kernels_on_workers(scheduler) == [[], []]


def test_a_step_notebook_outside_any_pipeline_has_nothing_to_import_ahead(tmp_path: Path
                                                                          ) -> None:
    """A spec that cannot be read mid-run (moved, rewritten) leaves both plans empty; the
    step then says what is wrong itself, not an IndexError of the pool's."""
    from jupyter_mlops.execution.daskplan import plans_of

    assert plans_of(str(tmp_path / "gone_pipeline" / "steps" / "01_a.ipynb")) == ([], [])


def _start_run(tmp_path: Path, pipeline: str, scheduler: str, runs: str) -> subprocess.Popen:
    """``jupyter mlops run PIPELINE --executor dask`` as its own process, in ``tmp_path``."""
    env = dict(os.environ, JUPYTER_MLOPS_KEEP_WARM="0")
    return subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", "run", pipeline,
                             "--executor", "dask", "--scheduler", scheduler, "--runs-dir", runs],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, run: subprocess.Popen, timeout: float = 120) -> None:
    """Until the file ``path`` exists (a step has reached the cell that writes it)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, f"{path.name} was never written"
        time.sleep(0.1)


@pytest.mark.parametrize("imports", ["", "import this\n"], ids=["pooled", "fresh"])
def test_a_cancel_kills_the_runs_kernels_on_the_workers(tmp_path: Path, scheduler: str,
                                                        imports: str) -> None:
    """A SIGTERM (a cancel) while a step runs on a worker: the worker kills the run's
    kernels, so the run ends cancelled in seconds, not when the step would have ended. Also
    a kernel papermill started itself (``import this`` prints as it is imported, so the one
    started ahead, which imported it, is not used)."""
    started = tmp_path / "started"
    write_notebook(tmp_path / "long.ipynb",
                   f"%%mlops step a\n{imports}import pathlib, time\n"
                   f"pathlib.Path({str(started)!r}).touch()\ntime.sleep(300)\nx = 1")
    assert run_cli("export", str(tmp_path / "long.ipynb")).returncode == 0
    run = _start_run(tmp_path, "long_pipeline", scheduler, "runs")
    _wait_for(started, run)
    stopped_at = time.monotonic()
    run.terminate()
    _, err = run.communicate(timeout=60)
    assert time.monotonic() - stopped_at < 30, err
    record = _record(tmp_path / "runs")
    assert record["status"] == "cancelled", (record, err)
    assert [s["status"] for s in record["steps"]] == ["cancelled"]
    deadline = time.monotonic() + 20
    while _kernels_on_workers(scheduler) != [[], []]:
        assert time.monotonic() < deadline, _kernels_on_workers(scheduler)
        time.sleep(0.5)


def test_a_run_ending_leaves_another_runs_kernels_on_the_cluster(tmp_path: Path,
                                                                 scheduler: str) -> None:
    """Two runs share the cluster: the one that ends first shuts down its own kernels only,
    and the other's step, running meanwhile, goes on to succeed."""
    started, release = tmp_path / "started", tmp_path / "release"
    write_notebook(tmp_path / "slow.ipynb",
                   f"%%mlops step a\nimport pathlib, time\npathlib.Path({str(started)!r})"
                   f".touch()\nwhile not pathlib.Path({str(release)!r}).exists():\n"
                   "    time.sleep(0.1)\nx = 1")
    write_notebook(tmp_path / "quick.ipynb", "%%mlops step b\ny = 2")
    for name in ("slow", "quick"):
        assert run_cli("export", str(tmp_path / f"{name}.ipynb")).returncode == 0
    slow = _start_run(tmp_path, "slow_pipeline", scheduler, "slow_runs")
    _wait_for(started, slow)
    quick = _start_run(tmp_path, "quick_pipeline", scheduler, "quick_runs")
    out, err = quick.communicate(timeout=120)
    assert quick.returncode == 0, out + err
    assert slow.poll() is None  # its step waits for the release, in a kernel still alive
    release.touch()
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, out + err
    assert _record(tmp_path / "slow_runs")["status"] == "succeeded"


def _prepared_kernels(scheduler: str, token: str) -> dict[str, int | None]:
    """The kernels the workers hold ready for the run of ``token``: ``{notebook: pid}``."""
    from distributed import Client

    def prepared(token: str) -> dict[str, int | None]:
        from jupyter_mlops.execution import daskworker

        with daskworker._LOCK:
            pools = [pool for key, pool in daskworker._POOLS.items() if key[0] == token]
        return {notebook: kernel.pid for pool in pools
                for notebook, kernel in list(pool._idle.items())}

    with Client(scheduler, timeout=10) as client:
        found: dict[str, int | None] = {}
        for kernels in client.run(prepared, token).values():
            found.update(kernels)
        return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_kernel_started_for_a_step_then_reused_from_the_cache_is_dropped(
        tmp_path: Path, scheduler: str) -> None:
    """The runner skips a step whose result it reuses: the kernel a worker started ahead
    for it is shut down then, not at the run's end, and that worker counts as free."""
    from jupyter_mlops.execution.daskexec import DaskExecutor
    from jupyter_mlops.execution.executors import ExecutorSettings
    from jupyter_mlops.execution.stepexec import KernelCommand, StepCall
    from jupyter_mlops.pipeline.spec import PipelineSpec

    write_notebook(tmp_path / "c.ipynb", "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1")
    assert run_cli("export", str(tmp_path / "c.ipynb")).returncode == 0
    pipeline = tmp_path / "c_pipeline"
    spec = PipelineSpec.read(pipeline)
    a, b = spec.steps
    kernel = KernelCommand(spec.kernel["name"], str((pipeline / spec.workdir).resolve()))
    executor = DaskExecutor.open(ExecutorSettings(address=scheduler))
    try:
        (tmp_path / "out").mkdir()
        executor.run(StepCall(step="a", notebook=str(pipeline / a.notebook),
                              output=str(tmp_path / "out" / "a.ipynb"), kernel=kernel,
                              parameters={"mlops_artifacts": str(tmp_path / "art")}), None)
        assert list(executor.prepared) == [str(pipeline / b.notebook)]
        notebook = str(pipeline / b.notebook)
        deadline = time.monotonic() + 60
        while _prepared_kernels(scheduler, executor.token).get(notebook) is None:
            assert time.monotonic() < deadline, "no kernel was started ahead for b"
            time.sleep(0.3)
        pid = _prepared_kernels(scheduler, executor.token)[notebook]
        assert psutil.pid_exists(pid)
        executor.skip("b")
        assert executor.prepared == {}
        deadline = time.monotonic() + 30
        while _alive(pid):  # b's kernel shut down, the run still open
            assert time.monotonic() < deadline, "b's kernel still runs"
            time.sleep(0.3)
        assert _prepared_kernels(scheduler, executor.token) == {}
    finally:
        executor.close()
    assert _kernels_on_workers(scheduler) == [[], []]


class _StandIn:
    """A stand-in for a distributed ``Client``, for which steps run at once and which end
    first decide where the executor sends steps and starts kernels: on a real cluster that
    order is the machine's to choose. What each task would do on a worker is tested on the
    real cluster above; here only the executor's choices are."""

    def __init__(self, workers: list[str]) -> None:
        self.workers = workers
        self.steps: dict[str, tuple[threading.Event, str | None]] = {}
        self.sent: list[tuple[str, str | None, list[str]]] = []  # (task, worker, notebooks)
        self.refuse = False  # a send that fails (the scheduler gone)
        self.roles: dict[str | None, str | None] = {}  # each worker's part in sharing a zygote
        self.later: dict[str, list[str]] = {}  # per step sent: the steps still expected

    def nthreads(self) -> dict[str, int]:
        return {w: 1 for w in self.workers}

    def submit(self, task, *args, workers=None, **_options):
        from concurrent.futures import Future

        from jupyter_mlops.execution import daskworker

        where = workers[0] if workers else None
        future: Future = Future()
        if task is daskworker.run_step and self.refuse:
            raise OSError("the scheduler is gone")
        if task is daskworker.run_step:
            call, ahead = args[1], args[2]
            self.sent.append((call.step, where, [Path(n).stem for n in ahead]))
            self.later[call.step] = [Path(n).stem for n in args[4]]
            done = threading.Event()
            self.steps[call.step] = (done, where)
            threading.Thread(target=lambda: (done.wait(30), future.set_result(where or "w?")),
                             daemon=True).start()
        else:
            if task is daskworker.prepare:
                self.sent.append(("prepare", where, [Path(args[1]).stem]))
            if task is daskworker.warm_up:  # what its zygote imports
                self.sent.append(("warm_up", where, [name for name, _, _ in args[2][1]]))
                self.roles[where] = args[3]
            future.set_result(None)
        return future


def _drive(tmp_path: Path, cli, workers: list[str], *cells: str):
    """An executor on the stand-in client for the exported notebook of ``cells``, and how
    to send a step (its thread) and end it."""
    from jupyter_mlops.execution.daskexec import DaskExecutor
    from jupyter_mlops.execution.stepexec import KernelCommand, StepCall

    write_notebook(tmp_path / "s.ipynb", *cells)
    assert cli("export", str(tmp_path / "s.ipynb")).returncode == 0
    client = _StandIn(workers)
    executor = DaskExecutor("stand-in", client=client)
    kernel = KernelCommand("python3", str(tmp_path), ())
    steps = (tmp_path / "s_pipeline" / "steps").glob("*.ipynb")
    notebooks = {p.stem.split("_", 1)[1]: p for p in steps}

    failed: list[BaseException] = []

    def run(call: StepCall) -> None:
        try:
            executor.run(call)
        except BaseException as err:  # the test's thread says it
            failed.append(err)

    def send(name: str) -> threading.Thread:
        call = StepCall(name, str(notebooks[name]), str(tmp_path / f"{name}.out.ipynb"), kernel)
        thread = threading.Thread(target=run, args=(call,), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while name not in client.steps:
            assert not failed, failed
            assert time.monotonic() < deadline, f"step {name} was never sent"
            time.sleep(0.001)
        return thread

    def end(name: str, thread: threading.Thread) -> None:
        client.steps[name][0].set()
        thread.join(10)
        assert not thread.is_alive() and not failed, failed

    return executor, client, send, end


def test_two_steps_that_wait_for_one_are_not_both_kept_for_its_worker(tmp_path: Path,
                                                                       cli) -> None:
    """n and m wait for a only: a's worker starts n's kernel, not m's too (m would then be
    sent to the worker busy with n, not to the one left idle)."""
    executor, client, send, end = _drive(
        tmp_path, cli, ["w1", "w2", "w3"], "%%mlops step x\nimport time\nlong = 1",
        "%%mlops step a\nbase = 1", "%%mlops step n\nleft = base + 1",
        "%%mlops step m\nright = base + 2", "%%mlops step z\nprint(long, left, right)")
    x = send("x")
    a = send("a")
    end("a", a)
    n, m = send("n"), send("m")
    runs = {step: (where, ahead) for step, where, ahead in client.sent if step != "prepare"}
    assert runs["a"][1] == ["03_n"]  # not m as well
    assert runs["n"][0] == runs["a"][0]  # to the worker holding its kernel
    assert runs["m"][0] not in (None, runs["n"][0])  # to the idle worker, not behind n
    assert set(executor.busy) == {runs["x"][0], runs["n"][0], runs["m"][0]}
    end("n", n)
    assert set(executor.busy) == {runs["x"][0], runs["m"][0]}
    end("m", m)
    end("x", x)
    assert not executor.busy


def test_a_kernel_is_started_ahead_by_one_worker_only(tmp_path: Path, cli) -> None:
    """m waits for a and b, which run at once on two of three workers: its kernel is
    started once, not also on the third worker."""
    _, client, send, end = _drive(
        tmp_path, cli, ["w1", "w2", "w3"], "%%mlops step a\nleft = 1",
        "%%mlops step b\nright = 2", "%%mlops step x\nother = right + 1",
        "%%mlops step m\nboth = left + right", "%%mlops step z\nprint(other, both)")
    a, b = send("a"), send("b")
    started = [n for _, _, ahead in client.sent for n in ahead]
    assert started.count("04_m") == 1, client.sent
    end("a", a)
    end("b", b)


def test_the_kernels_noted_for_a_worker_are_those_it_was_last_told_to_keep(tmp_path: Path,
                                                                          cli) -> None:
    """A worker drops the kernels it started ahead for steps it is not told of again; the
    executor must not still send those steps there, expecting a kernel ready."""
    executor, client, send, end = _drive(
        tmp_path, cli, ["w1"], "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1",
        "%%mlops step d\nw = y * 2", "%%mlops step c\nz = x + y", "%%mlops step e\nprint(z, w)")
    # a's worker keeps b's and c's kernels (c waits for a and b); b's then d's and e's
    for name in ("a", "b", "d", "c"):
        end(name, send(name))
        told = {}  # each worker's last list of kernels to keep
        for _, where, ahead in client.sent:
            told[where] = ahead
        for notebook, worker in executor.prepared.items():
            assert Path(notebook).stem in told[worker], (name, executor.prepared, told)


def test_each_step_sent_names_every_step_still_expected(tmp_path: Path, cli) -> None:
    """A worker starts kernels for a chain's next two steps only, but its successor zygote
    imports for every step still expected: each step is sent with all of them, and with
    their plans."""
    _, client, send, end = _drive(
        tmp_path, cli, ["w1"], "%%mlops step a\nx = 1", "%%mlops step b\ny = x + 1",
        "%%mlops step c\nz = y + 1", "%%mlops step d\nw = z + 1", "%%mlops step e\nprint(w)")
    end("a", send("a"))
    assert client.later["a"] == ["02_b", "03_c", "04_d", "05_e"]
    ahead = {step: names for step, _, names in client.sent}
    assert ahead["a"] == ["02_b", "03_c"]  # kernels started ahead: the next two only
    end("b", send("b"))
    assert client.later["b"] == ["03_c", "04_d", "05_e"]


def test_a_send_that_fails_frees_its_worker(tmp_path: Path, cli) -> None:
    """The scheduler refuses a step: its error comes back, and its worker is free and
    starts no kernel ahead for the steps after it."""
    from jupyter_mlops.execution.stepexec import KernelCommand, StepCall

    executor, client, _, _ = _drive(tmp_path, cli, ["w1", "w2"], "%%mlops step a\nx = 1",
                                    "%%mlops step b\nprint(x)")
    client.refuse = True
    notebook = next((tmp_path / "s_pipeline" / "steps").glob("01_*.ipynb"))
    call = StepCall("a", str(notebook), str(tmp_path / "a.out.ipynb"),
                    KernelCommand("python3", str(tmp_path), ()))
    with pytest.raises(OSError, match="the scheduler is gone"):
        executor.run(call)
    assert not executor.busy and not executor.preparing and not executor.prepared


def test_a_step_reused_from_the_cache_gets_no_kernel_noted(tmp_path: Path, cli) -> None:
    """b's kernel is being started while a runs, and b's result then comes from the cache:
    no worker is noted as holding a kernel for it, so none counts as busy with one."""
    executor, client, send, end = _drive(tmp_path, cli, ["w1", "w2"], "%%mlops step a\nx = 1",
                                         "%%mlops step b\ny = x + 1", "%%mlops step c\nprint(y)")
    a = send("a")
    assert client.sent[-1][2][0] == "02_b"  # a's worker starts b's kernel
    executor.skip("b")
    end("a", a)
    assert not any(Path(n).stem == "02_b" for n in executor.prepared), executor.prepared


_FIT = ("%%mlops step fit\nfrom sklearn.dummy import DummyRegressor",
        "%%mlops model model\nmodel = DummyRegressor().fit(frame[['x']], frame['y'])")


def _warm_ups(tmp_path: Path, cli, first: str, upcoming: list[str], *cells: str,
              workers: tuple[str, ...] = ("w1", "w2")):
    """The modules each worker is told to warm up when step ``first`` of the exported
    ``cells`` is sent while the runner expects ``upcoming``; the worker ``first`` went to;
    and each worker's part in sharing a zygote's imports (:mod:`.hostshare`)."""
    from jupyter_mlops.execution.executors import RunPlan

    executor, client, send, end = _drive(
        tmp_path, cli, list(workers), "%%mlops setup\nimport pandas as pd",
        f"%%mlops step {first}\nframe = pd.DataFrame({{'x': [1.0, 2.0], 'y': [0.0, 1.0]}})",
        *cells)
    executor.start(RunPlan(kernel=None, parallelism=2, upcoming=lambda: upcoming))
    thread = send(first)
    warmed = {where: modules for task, where, modules in client.sent if task == "warm_up"}
    where = next(where for task, where, _ in client.sent if task == first)
    end(first, thread)
    return warmed, where, client.roles


def test_workers_warmed_while_the_first_step_runs_elsewhere_import_what_saving_a_model_needs(
        tmp_path: Path, cli) -> None:
    """The first step's worker warms its zygote with that step's imports alone (its kernel
    waits for them); the other workers, whose first step comes later, with what loading and
    saving every step's artifacts imports too: skops, for the model a branch saves."""
    # the runner's plan: the steps it still expects, each waiting for load
    warmed, first, roles = _warm_ups(tmp_path, cli, "load", ["fit", "other"], *_FIT,
                                     "%%mlops step other\ntotal = float(frame['x'].sum())")
    assert set(warmed) == {"w1", "w2"}
    assert "pandas" in warmed[first] and "skops.io" not in warmed[first]
    other = next(w for w in warmed if w != first)
    assert warmed[other][:len(warmed[first])] == warmed[first]
    assert "skops.io" in warmed[other]
    assert roles == {"w1": None, "w2": None}  # not addresses of one machine: nothing shared


def test_the_workers_on_the_first_steps_machine_fork_their_zygotes_from_its(
        tmp_path: Path, cli) -> None:
    """The other workers have time until a later step reaches them: those on the machine of
    the first step's worker follow it (fork their zygotes from its, :mod:`.hostshare`), a
    worker on another machine imports on its own."""
    workers = ("tcp://127.0.0.1:4001", "tcp://127.0.0.1:4002", "tcp://192.168.5.6:4003")
    _, first, roles = _warm_ups(tmp_path, cli, "load", ["fit", "other"], *_FIT,
                                "%%mlops step other\ntotal = float(frame['x'].sum())",
                                workers=workers)
    assert first.startswith("tcp://127.0.0.1:")
    same = next(w for w in workers[:2] if w != first)
    assert roles == {first: "lead", same: "follow", workers[2]: None}


def test_workers_in_one_process_share_no_zygote(tmp_path: Path, cli) -> None:
    """Workers of a cluster made with ``processes=False`` (``inproc://`` addresses, one IP)
    hold one kernel pool between them already: none leads or follows."""
    workers = ("inproc://127.0.0.1/4242/1", "inproc://127.0.0.1/4242/2")
    _, first, roles = _warm_ups(tmp_path, cli, "load", ["fit", "other"], *_FIT,
                                "%%mlops step other\ntotal = float(frame['x'].sum())",
                                workers=workers)
    assert first in workers and roles == {w: None for w in workers}


def test_no_worker_is_warmed_wider_when_another_step_could_start(tmp_path: Path, cli) -> None:
    """Two steps that wait for nothing start together: the second one's worker may get its
    warm-up first, and its kernel would wait for the wider imports. Every worker is then
    warmed with the first step's own."""
    warmed, _, roles = _warm_ups(tmp_path, cli, "x", ["y", "fit"],
                                 "%%mlops step y\nother = pd.DataFrame({'z': [3.0]})", *_FIT,
                                 workers=("tcp://127.0.0.1:4001", "tcp://127.0.0.1:4002"))
    assert len(warmed) == 2 and not any("skops.io" in m for m in warmed.values()), warmed
    assert set(roles.values()) == {None}  # y's worker must not wait for x's zygote
