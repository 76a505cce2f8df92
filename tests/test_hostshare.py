"""A run's Dask workers on one machine share one zygote's imports (:mod:`.hostshare`).

Two real kernel pools in this process stand for two workers of one run (each pool is what a
worker holds; what is shared goes through files and a Unix socket, as between processes):
the leader's zygote forks a real kernel, is kept at the run's socket once its successor
imported, and the follower's zygote is forked from that keeper. The follower's decisions
(wait, attach, import alone) are tested on the files alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from jupyter_mlops.execution import hostshare, warm
from jupyter_mlops.execution.hostshare import Share
from jupyter_mlops.execution.kernelpool import KernelPool
from jupyter_mlops.execution.stepexec import KernelCommand

ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)
SLOW = 15  # seconds the successor's new package takes to import


def _run_files(token: str) -> list[str]:
    """The files of run ``token`` in the keepers' folder."""
    folder = warm.folder()
    assert folder is not None
    name = Share(token, False).token
    return sorted(p.name for p in folder.glob(f"r-{name}*"))


def _wait(condition, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.kernel
def test_a_follower_forks_its_zygote_from_the_leaders_and_the_leader_goes_on_forking(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader forks a's kernel, spawns a successor for c's new package (slow to
    import) and offers it once imported; meanwhile b, needing nothing new, is forked from the
    first zygote at once (not held up by the offer waiting for the successor). The
    follower's zygote is the keeper's child, with the successor's imports; its kernel is
    its own. The run's end stops the keeper and removes the run's files."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "slow_mod.py").write_text(f"import time\ntime.sleep({SLOW})\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    work = tmp_path / "work"
    work.mkdir()
    plans = {"a": [("json", (), False)], "b": [("json", (), False)],
             "c": [("json", (), False), ("slow_mod", (), False)]}
    kernel = KernelCommand("python3", str(work), ARGUMENTS)
    token = uuid.uuid4().hex
    leader = KernelPool(kernel, 1, lambda: ["b", "c"], lambda key: plans[key])
    follower = KernelPool(kernel, 1, None, lambda key: plans[key])
    leader.share, follower.share = Share(token, True), Share(token, False)
    try:
        follower.warm_up("c")  # waits for the leader's zygote: no import of its own
        first = leader.lease("a")
        assert first is not None and first.wait() is not None
        zygote = leader.zygote
        assert zygote is not None and zygote.successor is not None
        second = leader.lease("b")
        assert second is not None
        b = second.wait()
        assert b is not None
        assert not zygote.successor.started  # b did not wait for slow_mod
        assert psutil.Process(b.provisioner.process.pid).ppid() == zygote.process.pid
        assert follower.zygote is None  # still waiting for the leader's offer
        # its warm-up has its zygote once the leader's successor imported (no step waits
        # on it meanwhile: one would stop the wait, :func:`Share.hurry`)
        assert _wait(lambda: follower.zygote is not None, within=SLOW + 60)
        third = follower.lease("c")
        assert third is not None
        c = third.wait()
        assert c is not None
        shared = follower.zygote
        assert shared is not None and shared.source == "shared" and shared.process is None
        assert ("slow_mod", (), False) in shared.first.imported
        keeper = psutil.Process(shared.first.pid).ppid()
        assert psutil.Process(keeper).ppid() == zygote.successor.pid
        assert psutil.Process(c.provisioner.process.pid).ppid() == shared.first.pid
        for lease in (first, second, third):
            lease.release()
    finally:
        follower.close()
        leader.close()
    assert _wait(lambda: not _run_files(token)), _run_files(token)
    assert _wait(lambda: not psutil.pid_exists(keeper) or psutil.Process(keeper).status()
                 == psutil.STATUS_ZOMBIE)


@pytest.fixture
def kernel_of(tmp_path: Path) -> tuple[list[str], str, dict[str, str]]:
    """What names a zygote's imports: an interpreter, a folder, an environment."""
    return ["/usr/bin/python3"], str(tmp_path), {"A": "1"}


def _find(share: Share, kernel: tuple[list[str], str, dict[str, str]],
          closed=lambda: False) -> tuple[Path | None, float]:
    start = time.monotonic()
    found = share.find(*kernel, closed)
    return found, time.monotonic() - start


def test_a_follower_with_no_leader_on_its_machine_imports_alone(
        kernel_of, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hostshare, "GRACE", 0.3)
    found, took = _find(Share(uuid.uuid4().hex, False), kernel_of)
    assert found is None and 0.3 <= took < 3


def test_a_follower_whose_leader_has_another_kernel_imports_alone_at_once(
        kernel_of, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader's environment differs (a worker's own GPU, say): its imports are not the
    follower's; the follower does not wait out the grace time either."""
    monkeypatch.setattr(hostshare, "GRACE", 5.0)
    token = uuid.uuid4().hex
    leader = Share(token, True)
    interpreter, folder, env = kernel_of
    leader.name(interpreter, folder, {**env, "CUDA_VISIBLE_DEVICES": "1"})
    try:
        assert leader.path is not None
        found, took = _find(Share(token, False), kernel_of)
        assert found is None and took < 2
    finally:
        leader.close()
    assert not _run_files(token)


def test_a_follower_waits_while_the_leader_holds_its_lead_and_not_after(kernel_of) -> None:
    """Locked: the follower waits; let go without a socket (the leader could not offer):
    the follower imports alone at once; a run that ends stops the wait too."""
    token = uuid.uuid4().hex
    leader = Share(token, True)
    leader.name(*kernel_of)
    try:
        result: list[tuple[Path | None, float]] = []
        thread = threading.Thread(target=lambda: result.append(
            _find(Share(token, False), kernel_of)))
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive()  # past the grace time: the lead file is there, locked
        leader.release()
        thread.join(5)
        assert not thread.is_alive() and result[0][0] is None
        # the lead file stays, unlocked: a follower coming later does not wait
        assert _find(Share(token, False), kernel_of)[1] < 1
    finally:
        leader.close()
    assert not _run_files(token)
    again = uuid.uuid4().hex
    other = Share(again, True)
    other.name(*kernel_of)
    try:
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        found, took = _find(Share(again, False), kernel_of, stop.is_set)
        assert found is None and took < 3
    finally:
        other.close()


def test_a_follower_whose_step_waits_stops_waiting_for_the_leader_soon(
        kernel_of, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader holds its lead and never offers (its first step went to another worker):
    once a step waits for a kernel on the follower, it waits :data:`HURRY` more at most."""
    monkeypatch.setattr(hostshare, "HURRY", 0.5)
    token = uuid.uuid4().hex
    leader = Share(token, True)
    leader.name(*kernel_of)
    try:
        follower = Share(token, False)
        threading.Timer(1.0, follower.hurry).start()
        found, took = _find(follower, kernel_of)
        assert found is None and 1.2 <= took < 4
    finally:
        leader.close()


def test_a_socket_already_there_is_taken_even_past_the_hurry(
        kernel_of, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step waited long before the follower's zygote was due (its warm-up queued behind
    the step): the leader's socket, there by then, is still taken."""
    monkeypatch.setattr(hostshare, "HURRY", 0.05)
    token = uuid.uuid4().hex
    leader = Share(token, True)
    leader.name(*kernel_of)
    try:
        assert leader.path is not None
        leader.path.touch()
        follower = Share(token, False)
        follower.hurry()
        time.sleep(0.2)
        assert _find(follower, kernel_of)[0] == leader.path
    finally:
        leader.close()


def test_a_leader_whose_zygote_came_warm_lets_the_followers_go() -> None:
    """Forked from a zygote an earlier run kept: every worker's comes from that one, so
    there is nothing to wait for."""
    class Warm:
        source = "warm"

    class Own:
        source = ""

    token = uuid.uuid4().hex
    for zygote, held in ((Own(), True), (Warm(), False)):
        leader = Share(token, True)
        try:
            lead = warm.folder() / f"r-{leader.token}.lead"
            leader.started(zygote)
            assert hostshare._locked(lead) is held
        finally:
            leader.close()


def test_a_follower_takes_the_socket_once_it_is_there(kernel_of) -> None:
    """The socket appears (here a plain file: the follower only looks; attaching is the
    zygote's part, tested above): the follower has its path even while the lead is held."""
    token = uuid.uuid4().hex
    leader = Share(token, True)
    leader.name(*kernel_of)
    try:
        assert leader.path is not None
        threading.Timer(0.5, leader.path.touch).start()
        found, took = _find(Share(token, False), kernel_of)
        assert found == leader.path and 0.4 < took < 5
    finally:
        leader.close()
    assert not _run_files(token)


def test_the_lead_file_is_locked_from_the_start_and_names_the_kernel_once(kernel_of) -> None:
    """The leader's lead file is there, locked, as soon as its part is made (made under
    another name and renamed once locked: a follower never sees it unlocked); the kernel it
    leads for is written once."""
    token = uuid.uuid4().hex
    leader = Share(token, True)
    try:
        lead = f"r-{leader.token}.lead"
        assert _run_files(token) == [lead]
        assert hostshare._locked(warm.folder() / lead)
        leader.name(*kernel_of)
        interpreter, folder, env = kernel_of
        leader.name(interpreter, folder, {**env, "B": "2"})  # a second call changes nothing
        assert leader.path is not None
        kernel = leader.path.name.removesuffix(".sock").rsplit("-", 1)[1]
        assert (warm.folder() / lead).read_text() == kernel
        assert kernel == warm.key_of(*kernel_of)[:16]
    finally:
        leader.close()
    assert not _run_files(token)


def test_a_leader_that_named_no_kernel_lets_the_followers_go_at_its_fork(kernel_of) -> None:
    """A pool whose zygote a step started before the leader's part was set never names its
    kernel: its first fork's offer has nothing to keep, and lets the followers go at once
    rather than have each wait for the lead until the run ends."""
    token = uuid.uuid4().hex
    leader = Share(token, True)
    try:
        lead = warm.folder() / f"r-{leader.token}.lead"
        assert hostshare._locked(lead) and leader.path is None
        leader.offer(object())  # the zygote is never asked: there is no socket to keep it at
        assert not hostshare._locked(lead)
        found, took = _find(Share(token, False), kernel_of)
        assert found is None and took < 1
    finally:
        leader.close()
    assert not _run_files(token)


def test_a_follower_removes_the_files_of_a_leader_that_is_gone(kernel_of) -> None:
    """The leader's worker was killed: its lead is unlocked, no keeper listens, and its
    close never ran. The follower's close at the run's end removes what it left; while a
    leader holds its lead, or its keeper listens, the follower touches nothing."""
    token = uuid.uuid4().hex
    leader = Share(token, True)
    leader.name(*kernel_of)
    assert leader.path is not None
    log = leader.path.with_suffix(".log")
    log.write_text("kept\n")
    try:
        Share(token, False).close()  # the lead is held: the leader's to remove
        assert len(_run_files(token)) == 2
        leader.path.touch()  # a keeper's socket
        leader.release()
        Share(token, False).close()  # its keeper listens: still the leader's
        assert len(_run_files(token)) == 3
        leader.path.unlink()  # the keeper ended with the leader's worker; no close ran
        Share(token, False).close()
        assert not _run_files(token)
    finally:
        leader.close()


@pytest.mark.kernel
def test_a_keeper_the_leader_never_learned_of_ends_with_the_runs_lead_file(
        tmp_path: Path) -> None:
    """A stop that kills the leader's zygote between the keeper's fork and its reply leaves
    a keeper the leader cannot stop (it has no pid to kill, and its close came before the
    socket): the keeper, kept while the run's lead file is there, ends once that is gone
    rather than waiting out :data:`hostshare.IDLE`, and removes its socket."""
    work = tmp_path / "work"
    work.mkdir()
    kernel = KernelCommand("python3", str(work), ARGUMENTS)
    token = uuid.uuid4().hex
    leader = KernelPool(kernel, 1, lambda: [], lambda key: [("json", (), False)])
    leader.share = share = Share(token, True)
    try:
        lease = leader.lease("a")
        assert lease is not None and lease.wait() is not None
        assert share.path is not None and share._lead is not None
        assert _wait(lambda: warm.status(share.path) is not None, within=30)
        state = warm.status(share.path)
        assert state is not None
        keeper = state["pid"]
        share._keeper = None  # as if the reply never came: the leader knows no pid
        share._lead.unlink()  # what the leader's close does first
        assert _wait(lambda: not psutil.pid_exists(keeper) or psutil.Process(keeper).status()
                     == psutil.STATUS_ZOMBIE, within=5)
        assert not share.path.exists()
        log = share.path.with_suffix(".log").read_text()
        assert "the run it was kept for ended" in log
        lease.release()
    finally:
        leader.close()


def test_a_keeper_whose_run_ended_while_it_imported_does_not_listen(tmp_path: Path) -> None:
    """The lead file is gone by the time the keeper would listen (the run ended while it
    imported): it says why in its log and ends, leaving no socket."""
    import os

    from jupyter_mlops.execution import keeper

    path, log = tmp_path / "k.sock", tmp_path / "k.log"
    pid = os.fork()
    if pid == 0:  # the keeper's own process, as a zygote forks it
        try:
            keeper.keep(str(path), 60.0, str(log), [], str(tmp_path / "gone.lead"))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 10
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        assert time.monotonic() < deadline, "the keeper went on"
        time.sleep(0.05)
    assert not path.exists()
    assert "not kept:" in log.read_text() and "gone.lead is gone" in log.read_text()
