"""The run store: what runs leave in it, how `jupyter mlops runs` shows it, RunStore's own
transactions, and several runs writing to one store at once."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.run.records import RunRecord, StepRecord
from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.runtime._files import sha256_file

CELLS = (
    "%%mlops setup\nimport pandas as pd",
    "%%mlops params\nn = 3\nk = 2\nfail = False",
    '%%mlops step a\ndf = pd.read_csv("data.csv")\ntotal = float(df["x"].sum()) * n\n'
    'if fail:\n    raise ValueError("failing on purpose")',
    "%%mlops step b\nscaled = total + k",
    "%%mlops metrics\nscore = scaled / 2",
)


def _pipeline(tmp_path: Path) -> Path:
    (tmp_path / "data.csv").write_text("x\n1\n2\n3\n")
    nb = write_notebook(tmp_path / "st.ipynb", *CELLS)
    done = run_cli("export", str(nb))
    assert done.returncode == 0, done.stderr
    return tmp_path / "st_pipeline"


def _run_id(stdout: str) -> str:
    match = re.search(r"^Run (\S+) (succeeded|failed)", stdout, re.M)
    assert match, stdout
    return match.group(1)


def _verify_run(run: RunRecord) -> int:
    """Every output the store records for a run is a file whose sha256 is the manifest's,
    beside a manifest file that says the same; the number checked."""
    checked = 0
    for step in run.steps:
        for name, manifest in step.outputs.items():
            folder = Path(run.folder) / "artifacts" / step.step
            assert sha256_file(folder / manifest["file"]) == manifest["sha256"], (run, name)
            assert json.loads((folder / f"{name}.json").read_text()) == manifest
            checked += 1
    return checked


def _one_line_error(done: Any) -> str:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


# -- what runs leave in the store, through `jupyter mlops runs` -----------------------------

@pytest.mark.kernel
def test_runs_list_show_and_diff(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    first = run_cli("run", str(pipeline))
    assert first.returncode == 0, first.stderr
    second = run_cli("run", str(pipeline), "-p", "k=5")
    assert second.returncode == 0, second.stderr
    failed = run_cli("run", str(pipeline), "-p", "fail=True", "-p", "n=4")
    assert failed.returncode == 1
    ids = [_run_id(first.stdout), _run_id(second.stdout), _run_id(failed.stdout)]
    assert default_store(pipeline).is_file()

    listed = run_cli("runs", "-C", str(pipeline), "--json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs] == ids[::-1]  # newest first
    assert [r["status"] for r in runs] == ["failed", "succeeded", "succeeded"]
    assert [r["parameters"] for r in runs] == [{"n": 4, "k": 2, "fail": True},
                                               {"n": 3, "k": 5, "fail": False},
                                               {"n": 3, "k": 2, "fail": False}]
    assert [r["metrics"] for r in runs] == [{}, {"score": 11.5}, {"score": 10.0}]
    assert all(r["started_by"].startswith("cli:") for r in runs)
    assert [r["environment"]["steps"]["a"]["pandas"] for r in runs] == [pd_version()] * 3
    failure = runs[0]
    assert "failing on purpose" in failure["error"]
    steps = {s["step"]: s for s in failure["steps"]}
    assert steps["a"]["status"] == "failed" and "failing on purpose" in steps["a"]["error"]
    assert steps["a"]["outputs"] == {}
    store = RunStore(default_store(pipeline))
    try:  # what --json printed is what the store holds
        for listed_run in runs[1:]:
            record = store.run(listed_run["run_id"])
            assert record.to_dict() == {**listed_run, "served": record.served}
            assert _verify_run(record) == 2
    finally:
        store.close()

    table = run_cli("runs", "-C", str(pipeline))
    assert table.returncode == 0
    assert re.search(rf"^{ids[1]}\s+succeeded\s.*score=11\.5", table.stdout, re.M), table.stdout
    assert re.search(rf"^{ids[2]}\s+failed\s", table.stdout, re.M), table.stdout

    shown = run_cli("runs", "-C", str(pipeline), "show", ids[1])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    run = runs[1]
    assert f"Run {ids[1]} of `st`: succeeded" in text
    assert "k=5" in text
    # a does not use k: reused from the first run; b does: it ran
    assert re.search(rf"^  a: done \(reused from {ids[0]}\), ", text, re.M), text
    assert re.search(r"^  b: done, \d+\.\d s$", text, re.M), text
    for step in run["steps"]:
        for name, manifest in step["outputs"].items():
            assert f"    {name}: json sha256 {manifest['sha256'][:12]}" in text, text
    data = sha256_file(tmp_path / "data.csv")[:12]
    assert f"    reads data.csv: sha256 {data}" in text, text
    assert "Metrics: score = 11.5" in text
    # a run can be named by a unique part of its id
    assert run_cli("runs", "-C", str(pipeline), "show", ids[1][-6:]).stdout == text

    shown_failed = run_cli("runs", "-C", str(pipeline), "show", ids[2])
    assert shown_failed.returncode == 0
    assert f"Run {ids[2]} of `st`: failed" in shown_failed.stdout
    assert re.search(r"^  error: .*failing on purpose", shown_failed.stdout, re.M)
    assert re.search(r"^  a: failed", shown_failed.stdout, re.M)

    diff = run_cli("runs", "-C", str(pipeline), "diff", ids[0], ids[1])
    assert diff.returncode == 0, diff.stderr
    rows = {line.split()[0] + " " + line.split()[1]: line for line in diff.stdout.splitlines()
            if line.startswith(("param", "metric", "output", "file"))}
    assert rows["param k"].split()[2] == "*", diff.stdout
    assert rows["param k"].split()[3:] == ["2", "5"]
    assert "*" not in rows["param n"].split() and "*" not in rows["param fail"].split()
    assert rows["metric score"].split()[2:] == ["*", "10", "11.5"], diff.stdout
    assert "*" in rows["output b.score"].split()
    assert "*" not in rows["output a.total"].split()
    assert "*" not in rows["file a:data.csv"].split()
    assert diff.stdout.rstrip().endswith("(* differs)")
    assert diff.stdout.splitlines()[0].split() == [ids[0], ids[1]]

    # b never started: the store must say so as run.json does, not leave it "pending"
    record = json.loads((pipeline / "runs" / ids[2] / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == ["failed", "not run"]
    assert [s["status"] for s in failure["steps"]] == ["failed", "not run"], \
        "the store leaves a step that never ran as `pending` in a finished run"


def pd_version() -> str:
    import pandas

    return pandas.__version__


def test_unknown_run_missing_store_and_bad_action_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_line_error(run_cli("runs", "-C", str(empty)))
    assert "no run store" in line and str(empty) in line
    assert not default_store(empty).exists(), "listing runs must not create a store"
    line = _one_line_error(run_cli("runs", "--store", str(tmp_path / "nope.sqlite")))
    assert "no run store" in line

    store = RunStore(default_store(empty))
    store.start_run("20250101-000000-abcdef", "p", "0" * 64, tmp_path / "r", {}, {}, "test",
                    ["a"])
    store.close()
    line = _one_line_error(run_cli("runs", "-C", str(empty), "show", "nosuchrun"))
    assert "no run `nosuchrun`" in line
    line = _one_line_error(run_cli("runs", "-C", str(empty), "diff", "20250101", "nosuchrun"))
    assert "no run `nosuchrun`" in line
    line = _one_line_error(run_cli("runs", "-C", str(empty), "frobnicate"))
    assert "not a runs command" in line
    listed = run_cli("runs", "-C", str(empty), "--json")
    assert listed.returncode == 0
    assert [r["status"] for r in json.loads(listed.stdout)] == ["running"]


# -- RunStore on a temporary file ------------------------------------------------------------

def _manifest(name: str, sha: str, role: str = "value", value: Any = None) -> dict[str, Any]:
    manifest = {"name": name, "kind": "json", "file": f"{name}.data.json", "sha256": sha,
                "role": role}
    if value is not None:
        manifest["value"] = value
    return manifest


def _start(store: RunStore, run_id: str, steps: list[str], folder: Path) -> None:
    store.start_run(run_id, "pipe", "f" * 64, folder / run_id, {"n": 3, "name": "x"},
                    {"python": "3.x", "steps": {}}, "test", steps)


def _record(store: RunStore, run_id: str, step: str, **overrides: Any) -> None:
    fields: dict[str, Any] = {"status": "done", "started": 1.0, "ended": 2.0,
                              "cache_key": f"key-{step}", "cached_from": None,
                              "notebook": f"{step}.ipynb", "error": None, "checks": [],
                              "outputs": {}, "files": {}}
    fields.update(overrides)
    store.record_step(StepRecord(run_id, step, **fields))


def test_runstore_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.sqlite"
    store = RunStore(path)
    _start(store, "run-1", ["load", "train"], tmp_path)
    run = store.run("run-1")
    assert run.status == "running" and run.ended is None
    assert run.parameters == {"n": 3, "name": "x"}
    assert run.folder == str(tmp_path / "run-1")
    assert [(s.step, s.status) for s in run.steps] == [("load", "pending"),
                                                                 ("train", "pending")]
    store.mark_step("run-1", "load", "running", 5.0)
    assert store.run("run-1").steps[0].status == "running"

    frame = _manifest("df", "a" * 64)
    acc = _manifest("acc", "b" * 64, role="metrics", value=0.75)
    _record(store, "run-1", "load", outputs={"df": frame}, files={"data.csv": "c" * 64})
    _record(store, "run-1", "train", outputs={"acc": acc}, checks=[{"kind": "metric"}])
    store.finish_run("run-1", "succeeded", None)

    assert store.cached("key-load") == ("run-1", "load")
    assert store.cached("key-train") == ("run-1", "train")
    assert store.cached("key-other") is None
    assert store.artifacts("run-1", "load") == {"df": frame}
    assert store.artifacts("run-1", "nope") == {}
    run = store.run("run-1")
    assert run.status == "succeeded" and run.ended >= run.started
    assert run.metrics == {"acc": 0.75}
    steps = {s.step: s for s in run.steps}
    assert steps["load"].files == {"data.csv": "c" * 64}
    assert steps["train"].checks == [{"kind": "metric"}]
    assert steps["train"].outputs == {"acc": acc}

    # a reused step and a failed one make no cache entry; a second run is listed first
    time.sleep(0.01)
    _start(store, "run-2", ["load", "train"], tmp_path)
    _record(store, "run-2", "load", cache_key="key-load", cached_from="run-1",
            outputs={"df": frame})
    _record(store, "run-2", "train", status="failed", cache_key="key-failed",
            error="boom")
    store.finish_run("run-2", "failed", "boom")
    assert store.cached("key-load") == ("run-1", "load")
    assert store.cached("key-failed") is None
    assert [r.run_id for r in store.runs()] == ["run-2", "run-1"]
    assert [r.run_id for r in store.runs(limit=1)] == ["run-2"]
    assert store.run("run-2").error == "boom"
    assert store.run("run-2").steps[0].cached_from == "run-1"
    with pytest.raises(MlopsError, match="no run `run-3`"):
        store.run("run-3")
    with pytest.raises(MlopsError, match="no run `run-`"):  # ambiguous: two runs match
        store.run("run-")
    assert store.run("n-2").run_id == "run-2"
    store.close()

    # everything is on disk: another connection sees it
    again = RunStore(path)
    assert [r.status for r in again.runs()] == ["failed", "succeeded"]
    assert again.cached("key-train") == ("run-1", "train")
    again.close()


def test_record_step_is_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    _start(store, "run-1", ["load", "train"], tmp_path)
    good = _manifest("df", "a" * 64)
    _record(store, "run-1", "load", outputs={"df": good})
    before = store.run("run-1")

    # a manifest without "sha256" fails in the middle of the transaction (after the step
    # row was updated and the old artifacts deleted): nothing of it may remain
    broken = {"df2": _manifest("df2", "d" * 64), "bad": {"name": "bad", "file": "bad.npy"}}
    with pytest.raises(KeyError):
        _record(store, "run-1", "load", status="failed", cache_key="key-new", error="x",
                outputs=broken)
    with pytest.raises(KeyError):
        _record(store, "run-1", "train", cache_key="key-train", outputs=broken)
    assert not store.db.in_transaction
    for reader in (store, RunStore(path)):
        after = reader.run("run-1")
        assert after == before
        steps = {s.step: s for s in after.steps}
        assert steps["load"].status == "done" and steps["load"].cache_key == "key-load"
        assert steps["load"].outputs == {"df": good}
        assert steps["train"].status == "pending" and steps["train"].cache_key is None
        assert reader.artifacts("run-1", "train") == {}
        assert reader.cached("key-new") is None and reader.cached("key-train") is None
    rows = sqlite3.connect(path).execute(
        "SELECT step, name FROM artifacts ORDER BY step, name").fetchall()
    assert rows == [("load", "df")]
    # the store still takes writes afterwards
    _record(store, "run-1", "train", outputs={"df2": _manifest("df2", "d" * 64)})
    assert store.cached("key-train") == ("run-1", "train")
    store.close()


# -- several runs at once ----------------------------------------------------------------------

@pytest.mark.kernel
def test_four_concurrent_runs_share_one_store(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    command = [sys.executable, "-m", "jupyter_mlops.cli", "run", str(pipeline), "-j", "1"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out + err
    ids = {_run_id(out) for out, _ in outputs}
    assert len(ids) == 4

    store = RunStore(default_store(pipeline))
    runs = store.runs()
    store.close()
    assert {r.run_id for r in runs} == ids
    assert all(r.status == "succeeded" for r in runs)
    for run in runs:
        assert [s.status for s in run.steps] == ["done", "done"]
        assert run.metrics == {"score": 10.0}
        assert _verify_run(run) == 2
        for step in run.steps:
            assert step.cached_from is None or step.cached_from in ids
    db = sqlite3.connect(default_store(pipeline))
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # every cache entry points at a step that really ran, in a run of the store
    for run_id, step in db.execute("SELECT run_id, step FROM cache"):
        row = db.execute("SELECT status, cached_from FROM steps WHERE run_id=? AND step=?",
                         (run_id, step)).fetchone()
        assert row == ("done", None)
    db.close()


def _open_when_released(path: str, barrier: Any, errors: Any) -> None:
    barrier.wait()
    try:
        RunStore(path).close()
    except Exception as err:  # what the test reports
        errors.put(str(err))


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    """Four runs of a pipeline started together each open its store, new: SQLite refuses one
    at once ("database is locked") if the schema is made as reads that then write."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for attempt in range(15):
        path = str(tmp_path / f"s{attempt}" / ".mlops" / "store.sqlite")
        barrier, errors = context.Barrier(8), context.Queue()
        procs = [context.Process(target=_open_when_released, args=(path, barrier, errors))
                 for _ in range(8)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(60)
        assert errors.empty(), f"attempt {attempt}: {errors.get()}"
        assert all(proc.exitcode == 0 for proc in procs)


def test_a_copied_pipeline_finds_its_own_runs(tmp_path: Path) -> None:
    """Run folders inside the pipeline are recorded relative to it: a copy of the folder
    (or the folder moved) points at its own runs, not at the original's."""
    import shutil

    original = tmp_path / "a" / "p_pipeline"
    store = RunStore(default_store(original))
    store.start_run("r1", "p", "0" * 64, original / "runs" / "r1", {}, {}, "test", ["s"])
    store.start_run("r2", "p", "0" * 64, tmp_path / "elsewhere" / "r2", {}, {}, "test", ["s"])
    store.close()
    raw = sqlite3.connect(default_store(original))
    stored = dict(raw.execute("SELECT run_id, folder FROM runs").fetchall())
    raw.close()
    assert stored["r1"] == "runs/r1"  # inside: relative
    assert stored["r2"] == str((tmp_path / "elsewhere" / "r2").resolve())  # outside: absolute
    copy = tmp_path / "b" / "p_pipeline"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    store = RunStore(default_store(copy))
    try:
        assert store.run("r1").folder == str(copy.resolve() / "runs" / "r1")
        assert store.run("r2").folder == stored["r2"]
    finally:
        store.close()
