"""Zygotes kept warm between runs: real `jupyter mlops run` processes, real keepers.

After a run, a process keeps what the run's kernels imported; the next run of the same
pipeline, Python and environment forks its kernels from it. It must never hand a run stale
code (a module file changed since), never outlive its idle time, never hold the pipes of
whoever started the run, never be reachable by another user, and be listed and stopped by
`jupyter mlops warm`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import write_notebook

from jupyter_mlops.execution import keeper, warm
from jupyter_mlops.pipeline.export import export

pytestmark = pytest.mark.kernel

WARM_LINE = "kernel forked from a zygote kept warm since an earlier run"


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Any]:
    """A pipeline importing pandas and a module of a site folder outside the project, the
    environment its runs get (keepers in a temporary folder of this test's own)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "helperpkg.py").write_text("VALUE = 1\n")
    # a short folder: a Unix socket's name is at most 107 bytes
    temp = Path(tempfile.mkdtemp(prefix="mlw-", dir="/tmp"))
    notebook = write_notebook(
        tmp_path / "project" / "flow.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops setup\nimport pandas as pd\nimport helperpkg",
        "%%mlops params\nn = 3",
        "%%mlops step a\nframe = pd.DataFrame({'x': range(n)})\nvalue = helperpkg.VALUE * n",
        "%mlops metrics value")
    export(notebook)
    env = dict(os.environ, PYTHONPATH=str(site), TMPDIR=str(temp),
               JUPYTER_MLOPS_KEEP_WARM="120")
    yield {"pipeline": tmp_path / "project" / "flow_pipeline", "site": site, "env": env,
           "keepers": temp / f"jupyter-mlops-{os.getuid()}"}
    _mlops(env, "warm", "--stop")
    shutil.rmtree(temp, ignore_errors=True)


def _mlops(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``jupyter mlops ARGS`` as its own process, its output captured through pipes: a keeper
    that held them would keep this waiting until the timeout."""
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _run(project: dict[str, Any], *args: str) -> tuple[subprocess.CompletedProcess, Any]:
    ran = _mlops(project["env"], "run", str(project["pipeline"]), "--verbose", *args)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    run_id = ran.stdout.split("Run ", 1)[1].split()[0]
    record = json.loads((project["pipeline"] / "runs" / run_id / "run.json").read_text())
    return ran, record


def _value(record: dict[str, Any]) -> Any:
    return record["steps"][0]["outputs"]["value"]["value"]


def _keepers(project: dict[str, Any]) -> list[dict[str, Any]]:
    """Each keeper's status, asked over its socket as `jupyter mlops warm` does."""
    sockets = sorted(project["keepers"].glob("z-*.sock"))
    return [s for s in map(warm.status, sockets) if s is not None]


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_a_rerun_forks_its_kernels_from_the_zygote_the_last_run_kept(
        project: dict[str, Any]) -> None:
    started = time.monotonic()
    first, record = _run(project)
    # the run returned, its pipes closed, though a keeper of its imports lives on
    assert time.monotonic() - started < 120
    assert "kernel forked from a zygote" in first.stderr and WARM_LINE not in first.stderr
    assert _value(record) == 3
    keepers = _keepers(project)
    assert len(keepers) == 1
    keeper = keepers[0]
    assert keeper["folder"] == os.path.realpath(project["pipeline"].parent)  # the kernels'
    assert {"pandas", "helperpkg"} <= set(keeper["packages"])
    assert 0 < keeper["left"] <= 120

    second, record = _run(project, "-p", "n=4")
    assert WARM_LINE in second.stderr, second.stderr
    assert _value(record) == 4
    # the second run's zygote left a keeper of its own, which took the socket's name: the
    # first one ended
    (newer,) = _keepers(project)
    assert newer["pid"] != keeper["pid"] and _gone(keeper["pid"], 10)

    listed = _mlops(project["env"], "warm")
    assert listed.stdout.startswith(f"pid {newer['pid']}: "), listed.stdout
    assert os.path.realpath(project["pipeline"].parent) in listed.stdout
    stopped = _mlops(project["env"], "warm", "--stop")
    assert stopped.stdout == f"Stopped 1 warm zygote(s): pid {newer['pid']}\n"
    assert _gone(newer["pid"], 10)
    assert "No warm zygote" in _mlops(project["env"], "warm").stdout


def test_a_changed_module_file_is_never_served_from_the_keeper(
        project: dict[str, Any]) -> None:
    _run(project)
    assert len(_keepers(project)) == 1
    helper = project["site"] / "helperpkg.py"
    helper.write_text("VALUE = 20\n")
    second, record = _run(project, "--force")
    # the keeper saw the file change, ended, and the run imported the new code
    assert "the warm zygote ended, a run starts a new one" in second.stderr, second.stderr
    assert "helperpkg.py changed" in second.stderr
    assert WARM_LINE not in second.stderr
    assert _value(record) == 60
    third, record = _run(project, "--force")
    assert WARM_LINE in third.stderr and _value(record) == 60


def test_another_environment_gets_a_keeper_of_its_own(project: dict[str, Any]) -> None:
    _run(project)
    project["env"]["OMP_NUM_THREADS"] = "1"  # read by numpy's BLAS when imported
    other, _ = _run(project, "--force")
    assert WARM_LINE not in other.stderr
    assert len(_keepers(project)) == 2


def test_a_keeper_ends_once_idle_and_none_is_kept_when_told(project: dict[str, Any]) -> None:
    project["env"]["JUPYTER_MLOPS_KEEP_WARM"] = "2"
    _run(project)
    keepers = _keepers(project)
    assert len(keepers) == 1 and keepers[0]["left"] <= 2
    assert _gone(keepers[0]["pid"], 15)
    assert not list(project["keepers"].glob("z-*.sock"))
    log = next(project["keepers"].glob("z-*.log")).read_text()
    assert "ended: no run attached for 2 s" in log
    assert not list(project["keepers"].glob("z-*.lock"))  # its log stays, to say why

    project["env"]["JUPYTER_MLOPS_KEEP_WARM"] = "0"
    ran, _ = _run(project, "--force")
    assert WARM_LINE not in ran.stderr and not _keepers(project)
    project["env"]["JUPYTER_MLOPS_KEEP_WARM"] = "soon"
    ran, _ = _run(project, "--force")
    assert ("JUPYTER_MLOPS_KEEP_WARM=soon is not a number of seconds: no zygote is kept "
            "warm") in ran.stderr
    assert ran.stderr.count("is not a number of seconds") == 1
    assert not _keepers(project)


def test_the_files_of_keepers_that_ended_long_ago_are_removed(project: dict[str, Any]) -> None:
    # every pipeline folder and environment has a keeper name of its own; their logs and
    # lock files piled up by thousands, and each run's look for keepers read past them
    folder = project["keepers"]
    folder.mkdir(mode=0o700)
    stale = [folder / "z-0123456789abcdef01234567.log",
             folder / "z-0123456789abcdef01234567.sock.lock",
             folder / "z-89abcdef0123456789abcdef.sock.lock"]
    recent = folder / "z-fedcba9876543210fedcba98.log"
    for path in [*stale, recent]:
        path.write_text("")
    two_days_ago = time.time() - 2 * keeper.PRUNE_AGE
    for path in stale:
        os.utime(path, (two_days_ago, two_days_ago))
    _run(project)
    (kept,) = _keepers(project)  # it answers once it pruned
    assert [p.name for p in stale if p.exists()] == [] and recent.exists()
    (log,) = [p for p in folder.glob("z-*.log") if p != recent]
    assert log.with_suffix(".sock").exists() and kept["pid"] > 0
    assert "removed 3 files left by keepers that ended over 24 h ago" in log.read_text()


def test_what_runs_sharing_a_zygote_left_is_removed_a_day_on(tmp_path: Path) -> None:
    """A run's lead file whose leader is gone (nobody holds it), one half made, and the log
    of a shared zygote whose socket is gone are removed once a day old (a worker killed
    mid-run leaves them); a lead a leader still holds, and recent files, stay."""
    import fcntl

    old = time.time() - 2 * keeper.PRUNE_AGE
    gone = [tmp_path / "r-aaaaaaaaaaaa.lead", tmp_path / "r-bbbbbbbbbbbb.lead.4242",
            tmp_path / "r-aaaaaaaaaaaa-0123456789abcdef.log"]
    held = tmp_path / "r-cccccccccccc.lead"
    recent = tmp_path / "r-dddddddddddd.lead"
    for path in [*gone, held, recent]:
        path.write_text("")
    for path in [*gone, held]:
        os.utime(path, (old, old))
    fd = os.open(held, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        removed = keeper._prune(str(tmp_path), time.time())
    finally:
        os.close(fd)
    assert sorted(removed) == sorted(p.name for p in gone)
    assert held.exists() and recent.exists()


def test_a_lock_file_is_removed_only_by_whoever_holds_it(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # in this process: the keeper's locking is the standard library's
    sock = str(tmp_path / "z-a.sock")
    old = time.time() - 2 * keeper.PRUNE_AGE
    blocked, inside = threading.Event(), []
    flock = keeper.fcntl.flock

    def told_flock(fd: int, operation: int) -> None:
        if threading.current_thread().name == "waiter" and not blocked.is_set():
            blocked.set()  # it opened the file it is about to wait for
        flock(fd, operation)

    def waiter() -> None:
        with keeper._locked(sock):
            inside.append(os.path.exists(f"{sock}.lock"))

    monkeypatch.setattr(keeper.fcntl, "flock", told_flock)
    with keeper._locked(sock):
        os.utime(f"{sock}.lock", (old, old))
        keeper._prune(str(tmp_path), time.time())  # held: left
        assert os.path.exists(f"{sock}.lock")
        other = threading.Thread(target=waiter, name="waiter")
        other.start()
        assert blocked.wait(10)
        time.sleep(0.1)  # into the wait itself
        keeper._unlink_lock(sock)
    other.join(10)
    # it locked the file now at the name, not the one removed under it
    assert inside == [True]
    os.utime(f"{sock}.lock", (old, old))
    keeper._prune(str(tmp_path), time.time())
    assert not os.path.exists(f"{sock}.lock")


def test_what_a_killed_keeper_left_is_removed(tmp_path: Path) -> None:
    # a keeper killed (SIGKILL, the OOM killer) leaves its socket, which nobody listens on
    old = time.time() - 2 * keeper.PRUNE_AGE
    dead, live = str(tmp_path / "z-dead.sock"), str(tmp_path / "z-live.sock")
    half = tmp_path / "z-half.sock.4242"  # bound, never renamed into place
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(live)
    listener.listen(1)
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.bind(dead)
    gone.close()  # its file stays, refusing connections
    for path in (dead, f"{dead}.lock", str(tmp_path / "z-dead.log"), live, f"{live}.lock",
                 str(tmp_path / "z-live.log"), str(half)):
        if not os.path.exists(path):
            Path(path).write_text("")
        os.utime(path, (old, old))
    answered = threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True)
    answered.start()
    removed = keeper._prune(str(tmp_path), time.time())
    answered.join(10)
    listener.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z-live.log", "z-live.sock",
                                                          "z-live.sock.lock"]
    assert sorted(removed) == ["z-dead.log", "z-dead.sock", "z-dead.sock.lock",
                               "z-half.sock.4242"]  # what it says it removed


def test_no_keeper_where_other_users_could_reach_it(project: dict[str, Any]) -> None:
    project["keepers"].mkdir(mode=0o755)
    project["keepers"].chmod(0o755)
    ran, _ = _run(project)
    assert "is not a folder of this user's alone" in ran.stderr
    assert not list(project["keepers"].glob("z-*"))


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another user needs root")
def test_another_user_cannot_reach_a_keeper(project: dict[str, Any]) -> None:
    _run(project)
    (path,) = project["keepers"].glob("z-*.sock")
    # a child of this process that becomes `nobody` (no interpreter of its own: nobody may
    # not run this environment's Python) and tries the socket: 0 connected, 13 refused
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(str(path))
                code = 0
            except PermissionError:
                code = 13
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 13
    assert len(_keepers(project)) == 1  # its owner still reaches it


def test_a_module_edited_while_the_run_ran_is_not_kept(project: dict[str, Any]) -> None:
    # the step edits the module after its zygote imported it: what a keeper would hold is
    # older than the file, so none is kept from that run, and the next run sees the edit
    notebook = project["pipeline"].parent / "flow.ipynb"
    write_notebook(
        notebook, "%load_ext jupyter_mlops",
        "%%mlops setup\nimport pandas as pd\nimport helperpkg",
        "%%mlops params\nn = 3",
        "%%mlops step a\nvalue = helperpkg.VALUE * n\n"
        "with open(helperpkg.__file__, 'w') as out:\n    out.write('VALUE = 7\\n')",
        "%mlops metrics value")
    export(notebook)
    _, record = _run(project)
    assert _value(record) == 3
    log = next(project["keepers"].glob("z-*.log")).read_text()
    assert "not kept: " in log and "helperpkg.py changed since it was imported" in log
    assert not _keepers(project)
    ran, record = _run(project, "--force")
    assert WARM_LINE not in ran.stderr and _value(record) == 21


def test_two_runs_at_once_each_get_a_zygote(project: dict[str, Any]) -> None:
    _run(project)
    command = [sys.executable, "-m", "jupyter_mlops.cli", "run", str(project["pipeline"]),
               "--verbose", "--force"]
    runs = [subprocess.Popen(command, env=project["env"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
            for _ in range(2)]
    outputs = [run.communicate(timeout=180) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert all(WARM_LINE in err for _, err in outputs), outputs
    # each left a keeper under the one name: the later took it, the earlier ended
    (_keeper,) = _keepers(project)


def test_a_keeper_that_does_not_answer_costs_a_cold_start_not_the_run(
        project: dict[str, Any]) -> None:
    """A keeper too slow to answer may still fork a zygote on the pipes it was sent: the
    run must not use them. Here a stand-in keeper takes them, answers nothing, then writes
    a false reply into them once the run gave up waiting."""
    _run(project)
    (path,) = project["keepers"].glob("z-*.sock")
    _mlops(project["env"], "warm", "--stop")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    taken: list[int] = []
    wrote: list[str] = []

    def stand_in() -> None:
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            taken.extend(fds)
            conn.recv(1)  # until the run gives up waiting and hangs up
        # false replies while the run goes on, until it closed its ends of those pipes
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.write(fds[1], b'{"pid": 1}\n')
                wrote.append("written")
            except BrokenPipeError:
                wrote.append("nobody reads")
                return
            time.sleep(0.05)

    thread = threading.Thread(target=stand_in, daemon=True)
    thread.start()
    started = time.monotonic()
    ran, record = _run(project, "--force")
    thread.join(30)
    listener.close()
    assert len(taken) == 4 and _value(record) == 3
    assert wrote[-1:] == ["nobody reads"]
    assert "kernel forked from a zygote" in ran.stderr and WARM_LINE not in ran.stderr
    assert time.monotonic() - started < 60
    for fd in taken:
        os.close(fd)


def test_a_folder_on_the_path_changed_only_by_its_bytecode_cache_has_not_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module of a folder on sys.path imported for the first time makes its
    ``__pycache__`` (where bytecode is written), which changes the folder's time: the
    zygote's code is not older than anything there. A module added there or removed, a
    ``.pth`` file rewritten (an editable install moved), or any change to a folder that had
    its ``__pycache__`` already, is a change."""
    from jupyter_mlops.execution import zygote_main

    site, cached = tmp_path / "site", tmp_path / "cached"
    for folder in (site, cached):
        folder.mkdir()
        (folder / "one.py").write_text("A = 1\n")
    (site / "proj.pth").write_text("/old/checkout\n")
    (cached / "__pycache__").mkdir()
    monkeypatch.setattr(zygote_main, "FILES", {})
    monkeypatch.setattr(zygote_main, "FOLDERS", {})
    monkeypatch.setattr(sys, "path", [str(site), str(cached)])
    zygote_main.note_files()
    assert zygote_main.changed() == ""
    time.sleep(0.01)  # a later time for the folders
    (site / "__pycache__").mkdir()
    assert zygote_main.changed() == ""
    (site / "two.py").write_text("B = 2\n")
    assert zygote_main.changed() == f"{site} changed"
    (site / "two.py").unlink()
    assert zygote_main.changed() == ""
    (site / "proj.pth").write_text("/new/checkout/elsewhere\n")
    assert zygote_main.changed() == f"{site / 'proj.pth'} changed"
    (site / "proj.pth").write_text("/old/checkout\n")
    os.utime(site / "proj.pth", ns=zygote_main.FILES[str(site / "proj.pth")][0:1] * 2)
    assert zygote_main.changed() == ""
    (cached / "two.py").write_text("B = 2\n")
    (cached / "two.py").unlink()  # the same names, but the folder's time moved
    assert zygote_main.changed() == f"{cached} changed"


def test_the_keeper_is_chosen_by_interpreter_path_backend_and_limits(tmp_path: Path,
                                                                     monkeypatch: Any) -> None:
    monkeypatch.setenv("TMPDIR", str(Path(tempfile.mkdtemp(prefix="mlw-", dir="/tmp"))))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    env = {"PATH": "/usr/bin", "HOME": "/home/someone"}
    base = warm.socket_path([sys.executable], str(tmp_path), env)
    assert base is not None
    # a virtual environment's python is a link to its base's: a keeper of its own
    link = tmp_path / "venv" / "bin" / "python"
    link.parent.mkdir(parents=True)
    link.symlink_to(sys.executable)
    assert warm.socket_path([str(link)], str(tmp_path), env) != base
    assert warm.socket_path([sys.executable], str(tmp_path),
                            {**env, "MPLBACKEND": "Agg"}) != base
    # what a shell sets per command, what a kernel's launch sets, and how long a keeper
    # waits choose nothing
    assert warm.socket_path([sys.executable], str(tmp_path),
                            {**env, "_": "/usr/bin/time", "JPY_PARENT_PID": "1",
                             warm.VARIABLE: "60"}) == base
    mask = os.umask(0o077)
    try:
        assert warm.socket_path([sys.executable], str(tmp_path), env) != base
    finally:
        os.umask(mask)
    shutil.rmtree(os.environ["TMPDIR"], ignore_errors=True)
