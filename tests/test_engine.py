"""The ``mlops`` papermill engine: same notebook as papermill's engine, written far less often.

Kernels run in papermill processes started here (``python -m papermill``, as a user runs
``papermill --engine mlops``), never in the test process, so no event loop is left open in it.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import build_notebook, write_notebook

from jupyter_mlops.execution.engine import BackoffExecutionManager, write_notebook_text

TIMINGS = ("start_time", "end_time", "duration")
MARKER = "papermill-error-cell-tag"


def papermill(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``papermill ARGS`` as its own process."""
    return subprocess.run([sys.executable, "-m", "papermill", "--no-progress-bar", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


def both(tmp_path: Path, source: str, *args: str,
         cwd: Path | None = None) -> dict[str, tuple[subprocess.CompletedProcess[str], Any]]:
    """Run ``source`` through the default engine and ours; the process and the notebook left."""
    found = {}
    for engine in ("default", "mlops"):
        out = f"{engine}.ipynb"
        extra = ["--engine", "mlops"] if engine == "mlops" else []
        proc = papermill(source, out, *extra, *args, cwd=cwd or tmp_path)
        found[engine] = (proc, json.loads((tmp_path / out).read_text(encoding="utf-8")))
    return found


def normal(nb: dict[str, Any]) -> dict[str, Any]:
    """The notebook without what differs between two runs: times, output path, new ids."""
    nb = copy.deepcopy(nb)
    meta = nb["metadata"]["papermill"]
    for key in (*TIMINGS, "output_path"):
        assert key in meta
        meta[key] = None
    for cell in nb["cells"]:
        tags = cell["metadata"].get("tags", [])
        if "injected-parameters" in tags or MARKER in tags:
            cell["id"] = None  # new cells papermill makes get random ids
        timing = cell["metadata"].get("execution")  # nbclient's timestamps: keys kept
        if timing is not None:
            cell["metadata"]["execution"] = dict.fromkeys(timing)
        cell_meta = cell["metadata"].get("papermill")
        if cell_meta is not None:
            assert set(TIMINGS) <= set(cell_meta)
            for key in TIMINGS:
                cell_meta[key] = None
    return nb


def statuses(nb: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """(status, exception) of each cell; (None, None) for papermill's marker cells."""
    return [(c["metadata"].get("papermill", {}).get("status"),
             c["metadata"].get("papermill", {}).get("exception")) for c in nb["cells"]]


@pytest.mark.kernel
def test_passing_notebook_with_parameters_is_papermills(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    write_notebook(tmp_path / "in.ipynb", ("md", "# title"),
                   ("n = 2\nname = 'a'", ["parameters"]), "print(name * n)",
                   ("n * 10", ["keep"]), "import sys; print('err', file=sys.stderr)")
    # relative paths with --cwd: the output lands beside the caller, as papermill writes it
    runs = both(tmp_path, "in.ipynb", "-p", "n", "3", "-p", "name", "xy", "--cwd", "work")
    (default_proc, default), (ours_proc, ours) = runs["default"], runs["mlops"]
    assert default_proc.returncode == ours_proc.returncode == 0, ours_proc.stderr
    assert list(work.iterdir()) == []
    assert normal(ours) == normal(default)
    tags = [c["metadata"].get("tags", []) for c in ours["cells"]]
    assert tags == [[], ["parameters"], ["injected-parameters"], [], ["keep"], []]
    assert "".join(ours["cells"][3]["outputs"][0]["text"]) == "xyxyxy\n"
    assert ours["metadata"]["papermill"]["parameters"] == {"n": 3, "name": "xy"}
    assert ours["metadata"]["papermill"]["exception"] is None
    assert statuses(ours) == [("completed", False)] * 6
    nbformat.validate(nbformat.reads(json.dumps(ours), as_version=4))


@pytest.mark.kernel
def test_failing_cell_gets_papermills_banner_anchor_and_exit(tmp_path: Path) -> None:
    write_notebook(tmp_path / "in.ipynb", "x = 1", "print(x)", "raise ValueError('boom')",
                   "print('never')")
    runs = both(tmp_path, "in.ipynb")
    (default_proc, default), (ours_proc, ours) = runs["default"], runs["mlops"]
    assert default_proc.returncode == ours_proc.returncode == 1
    for proc in (default_proc, ours_proc):
        assert "PapermillExecutionError" in proc.stderr
        assert "ValueError: boom" in proc.stderr
    assert normal(ours) == normal(default)
    assert ours["cells"][0]["metadata"]["tags"] == [MARKER]  # the banner
    assert ours["cells"][3]["metadata"]["tags"] == [MARKER]  # the anchor before the failing cell
    assert 'id="papermill-error-cell"' in "".join(ours["cells"][3]["source"])
    assert statuses(ours) == [(None, None), ("completed", False), ("completed", False),
                              (None, None), ("failed", True), ("pending", None)]
    assert ours["cells"][4]["outputs"][0]["ename"] == "ValueError"
    assert ours["cells"][5]["outputs"] == []
    assert ours["metadata"]["papermill"]["exception"] is True


@pytest.mark.kernel
def test_timeout_marks_the_cell_where_papermill_does_not(tmp_path: Path) -> None:
    write_notebook(tmp_path / "in.ipynb", "import time\nprint('start')", "time.sleep(10)",
                   "print('never')")
    runs = both(tmp_path, "in.ipynb", "--execution-timeout", "1")
    (default_proc, default), (ours_proc, ours) = runs["default"], runs["mlops"]
    assert default_proc.returncode == ours_proc.returncode == 1
    for proc in (default_proc, ours_proc):
        assert "CellTimeoutError" in proc.stderr  # the same exception escapes both
    # papermill's engine: the timed-out cell and the never-run one after it say "completed",
    # and nothing says where the run stopped
    assert statuses(default) == [("completed", False), ("completed", False),
                                 ("completed", None)]
    assert default["metadata"]["papermill"]["exception"] is None
    # ours: the cell is marked failed, later cells stay pending, papermill's banner and anchor
    assert statuses(ours) == [(None, None), ("completed", False), (None, None),
                              ("failed", True), ("pending", None)]
    assert ours["metadata"]["papermill"]["exception"] is True
    assert ours["cells"][0]["metadata"]["tags"] == [MARKER]
    assert "In [2]" in "".join(ours["cells"][0]["source"])
    assert ours["cells"][2]["metadata"]["tags"] == [MARKER]
    # and that is the only difference
    ours = copy.deepcopy(ours)
    ours["cells"] = [c for c in ours["cells"] if MARKER not in c["metadata"].get("tags", [])]
    ours["metadata"]["papermill"]["exception"] = None
    ours["cells"][1]["metadata"]["papermill"].update(status="completed", exception=False)
    ours["cells"][2]["metadata"]["papermill"]["status"] = "completed"
    assert normal(ours) == normal(default)


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.kernel
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_killed_run_leaves_a_valid_notebook_with_the_saved_cells(tmp_path: Path) -> None:
    cells = [f"import time\nprint('cell {i}')\ntime.sleep(0.5)" for i in range(20)]
    write_notebook(tmp_path / "in.ipynb", *cells)
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen([sys.executable, "-m", "papermill", "--no-progress-bar",
                             "--engine", "mlops", "in.ipynb", "out.ipynb"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kernels: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not out.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no notebook written"
            time.sleep(0.05)
        started = time.monotonic()
        # every read while it runs finds a whole notebook (written to a temporary name,
        # then renamed); kill 4 s in, or once a completed cell is on disk if that is later
        while True:
            on_disk = json.loads(out.read_text(encoding="utf-8"))
            done = [s for s, _ in statuses(on_disk) if s == "completed"]
            if done and time.monotonic() - started >= 4:
                break
            assert proc.poll() is None and time.monotonic() < deadline, "ended before the kill"
            time.sleep(0.1)
        kernels = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        # the orphaned kernel notices its parent is gone (ipykernel's parent poller)
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in kernels) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in kernels:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    nb = nbformat.read(str(out), as_version=4)
    nbformat.validate(nb)
    found = statuses(json.loads(out.read_text(encoding="utf-8")))
    completed = sum(1 for s, _ in found if s == "completed")
    assert 1 <= completed < 20
    # completed cells first, then at most the one running, then pending ones
    assert found[:completed] == [("completed", False)] * completed
    rest = [s for s, _ in found[completed:]]
    assert rest in (["pending"] * len(rest), ["running"] + ["pending"] * (len(rest) - 1))
    for index, cell in enumerate(nb.cells[:completed]):
        assert [o["text"] for o in cell.outputs] == [f"cell {index}\n"]
    assert all(c.outputs == [] for c in nb.cells[completed + 1:])


@pytest.mark.kernel
def test_cells_before_a_long_silent_cell_are_written_during_it(tmp_path: Path) -> None:
    write_notebook(tmp_path / "in.ipynb", "print('quick')", "import time\ntime.sleep(5)")
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen([sys.executable, "-m", "papermill", "--no-progress-bar",
                             "--engine", "mlops", "in.ipynb", "out.ipynb"], cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen = []
    try:
        while proc.poll() is None:
            if out.exists():
                try:
                    nb = json.loads(out.read_text(encoding="utf-8"))
                except ValueError:  # papermill's own last write, after the engine's, is
                    seen.append(None)  # not atomic: a read may land inside it
                else:
                    seen.append((statuses(nb), nb["cells"][0]["outputs"]))
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == 0
    # the engine's writes are atomic: only reads after the last cell ended may fail
    if None in seen:
        assert all(entry is None or entry[0] == [("completed", False)] * 2
                   for entry in seen[seen.index(None):]), seen
    # the quick cell finished within 1 s of the first write: the timer wrote it while the
    # sleep ran, with no output or cell end to trigger a write
    during = [outputs for found, outputs in seen
              if found == [("completed", False), ("running", False)]]
    assert during, seen[-1]
    assert "".join(during[0][0]["text"]) == "quick\n"


KERNEL_DRIVER = textwrap.dedent("""
    import json, os, sys
    import papermill
    from jupyter_client import AsyncKernelManager
    from jupyter_core.utils import run_sync

    km = AsyncKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)()
    for source in sys.argv[1:]:
        papermill.execute_notebook(source, "out-" + source, engine_name="mlops",
                                   progress_bar=False, km=km)
    alive = run_sync(km.is_alive)()
    pid = km.provisioner.process.pid
    run_sync(km.shutdown_kernel)(now=True)
    print(json.dumps({"alive": alive, "pid": pid}))
""")


@pytest.mark.kernel
def test_a_started_kernel_given_as_km_runs_the_notebooks_and_stays_up(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", "import os\nsecret = 41\nprint(os.getpid())")
    write_notebook(tmp_path / "b.ipynb", "print(secret + 1)")
    proc = subprocess.run([sys.executable, "-c", KERNEL_DRIVER, "a.ipynb", "b.ipynb"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["alive"] is True  # papermill left the kernel it was given running
    a = json.loads((tmp_path / "out-a.ipynb").read_text(encoding="utf-8"))
    b = json.loads((tmp_path / "out-b.ipynb").read_text(encoding="utf-8"))
    # both ran in that kernel: b sees what a defined
    assert "".join(a["cells"][0]["outputs"][0]["text"]) == f"{found['pid']}\n"
    assert "".join(b["cells"][0]["outputs"][0]["text"]) == "42\n"
    assert b["metadata"]["papermill"]["exception"] is None


DRIVER = textwrap.dedent("""
    import json, sys
    import papermill
    from papermill.engines import papermill_engines
    from jupyter_mlops.execution.engine import BackoffExecutionManager, MlopsEngine

    class Counting(BackoffExecutionManager):
        count = 0
        def write(self):
            type(self).count += 1
            super().write()

    class CountingEngine(MlopsEngine):
        manager_class = Counting

    papermill_engines.register("counting", CountingEngine)
    calls = []
    papermill.execute_notebook(sys.argv[1], sys.argv[2], engine_name="counting",
                               progress_bar=False,
                               on_cell=lambda i, n, cell: calls.append([i, n, cell.source]))
    print(json.dumps({"writes": Counting.count, "calls": calls}))
""")


@pytest.mark.kernel
def test_few_writes_and_progress_through_execute_notebook(tmp_path: Path) -> None:
    cells = ["x_0 = 0"] + [f"x_{i} = x_{i - 1} + {i}" for i in range(1, 300)]
    write_notebook(tmp_path / "in.ipynb", *cells)
    proc = subprocess.run([sys.executable, "-c", DRIVER, "in.ipynb", "out.ipynb"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # papermill's engine writes 2 x 300 + 2 times; at 1-30 s apart a few seconds take a few
    assert 2 <= report["writes"] <= 12, report["writes"]
    assert report["calls"] == [[i, 300, source] for i, source in enumerate(cells)]
    nb = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    assert nb.cells[-1].metadata.papermill["status"] == "completed"
    assert nb.metadata.papermill["exception"] is None


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_backoff_schedule_doubles_to_the_cap(tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    nb = build_notebook("x = 1")
    nb.metadata["papermill"] = {}
    manager = BackoffExecutionManager(nb, output_path=str(out), progress_bar=False)
    clock = FakeClock()
    manager.clock = clock  # type: ignore[method-assign]
    manager.notebook_start()
    assert manager.writes == 1 and out.exists()
    written_at = [clock.now]
    for _ in range(1600):  # a change every 1/8 s for 200 s
        clock.now += 0.125
        before = manager.writes
        manager.save()
        if manager.writes > before:
            written_at.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(written_at)]
    assert gaps[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert set(gaps[5:]) == {30.0}
    manager.save(force=True)
    assert manager.writes == len(written_at) + 1
    # a change that nothing follows is written by the timer once due, not before
    manager.save()
    assert manager.dirty
    assert manager.seconds_until_due() == pytest.approx(30.0)
    manager.flush_if_due()
    assert manager.dirty
    clock.now += 30
    assert manager.seconds_until_due() == 0
    manager.flush_if_due()
    assert not manager.dirty
    manager.notebook_complete()
    assert manager.writes == len(written_at) + 3
    assert nbformat.read(str(out), as_version=4).metadata.papermill["end_time"]


def test_autosave_setting_caps_or_disables_mid_cell_writes(tmp_path: Path) -> None:
    nb = build_notebook("x = 1")
    nb.metadata["papermill"] = {}
    capped = BackoffExecutionManager(nb, output_path=str(tmp_path / "a.ipynb"),
                                     progress_bar=False, autosave_cell_every=5)
    assert capped.max_interval == 5
    off = BackoffExecutionManager(nb, output_path=str(tmp_path / "b.ipynb"),
                                  progress_bar=False, autosave_cell_every=0)
    clock = FakeClock()
    off.clock = clock  # type: ignore[method-assign]
    off.notebook_start()
    clock.now += 60
    off.autosave_cell()
    assert off.writes == 1 and not off.dirty


def test_writes_are_atomic_keep_mode_and_follow_links(tmp_path: Path) -> None:
    real = tmp_path / "real.ipynb"
    real.write_text("old", encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "link.ipynb"
    link.symlink_to(real)
    write_notebook_text("new", str(link))
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.ipynb", "real.ipynb"]
    with pytest.raises(FileNotFoundError, match="doesn't exist"):
        write_notebook_text("x", str(tmp_path / "missing" / "out.ipynb"))
