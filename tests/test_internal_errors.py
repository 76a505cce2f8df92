"""Inputs that once ended in a traceback or an "internal error": each now ends in one line
and the right exit code (2 for what the user can fix, 1 for a run that failed), or, when the
reader of our output goes away (``| head``), in silence, as Unix tools do.

Every case runs the real CLI in its own process, as a user would; the full disk alone is
injected into that process, since a disk cannot be filled at one exact write portably.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Completed, run_cli, write_notebook
from test_broken import assert_no_traceback

from jupyter_mlops.run.records import StepRecord
from jupyter_mlops.run.store import RunStore, StoreWriteError, default_store

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def one_line(done: Completed, code: int = 2) -> str:
    """The one error line on stderr of a command that exited with ``code``."""
    assert_no_traceback(done)
    assert done.returncode == code, (done.returncode, done.stdout[-2000:], done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("jupyter mlops: error: "), lines[0]
    return lines[0]


def notebook_json(source: str) -> str:
    """A one-cell notebook as JSON text, for inputs that nbformat would refuse to write."""
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "execution_count": None,
            "outputs": [], "source": source}
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "cells": [cell],
                       "metadata": {"kernelspec": KERNELSPEC}})


# -- notebooks Python itself cannot read -----------------------------------------------------

def _deep_json() -> str:
    return "[" * 100_000 + "]" * 100_000  # json recurses once per level


def _long_number_in_json() -> str:  # Python refuses int("9" * 5000): sys.int_info
    return notebook_json("%%mlops step a\nx = 1\n").replace('"nbformat_minor": 5',
                                                            '"nbformat_minor": ' + "5" * 5000)


def _long_number_in_a_cell() -> str:
    return notebook_json("%%mlops step a\nx = " + "9" * 5000 + "\n")


def _long_expression() -> str:  # ast recurses once per `+`
    return notebook_json("%%mlops step a\nx = " + "+".join(["1"] * 100_000) + "\n")


def _lone_surrogate() -> str:
    return notebook_json("%%mlops step a\nx = 'SURROGATE'\n").replace("SURROGATE", "\\ud800")


UNREADABLE = {
    "deep_json": (_deep_json, "nests lists or objects too deeply"),
    "long_number_in_json": (_long_number_in_json, "a number of more than"),
    "long_number_in_a_cell": (_long_number_in_a_cell, "cell 1 has a syntax error on line 2"),
    "long_expression": (_long_expression, "cell 1 nests too deeply"),
    "lone_surrogate": (_lone_surrogate, "cell 1, line 2 holds a broken character"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_export_of_a_notebook_python_cannot_read_is_one_line(case: str, tmp_path: Path) -> None:
    make, expected = UNREADABLE[case]
    nb = tmp_path / f"{case}.ipynb"
    nb.write_text(make(), encoding="utf-8")
    line = one_line(run_cli("export", str(nb)))
    assert expected in line and nb.name in line, line
    assert not (tmp_path / f"{case}_pipeline").exists()


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_show_of_a_notebook_python_cannot_read_names_the_problem(case: str,
                                                                 tmp_path: Path) -> None:
    make, expected = UNREADABLE[case]
    nb = tmp_path / f"{case}.ipynb"
    nb.write_text(make(), encoding="utf-8")
    done = run_cli("show", str(nb))
    assert_no_traceback(done)
    assert done.returncode == 2, done.stderr
    # a notebook that cannot be read is one line on stderr; one whose cell cannot be read
    # is shown with that cell's problem, as any problem of a cell is
    lines = [line for line in (done.stderr + done.stdout).splitlines() if expected in line]
    assert len(lines) == 1 and nb.name in lines[0], (done.stdout[-2000:], done.stderr)


def test_a_named_pipe_is_refused_not_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "x.ipynb"
    os.mkfifo(fifo)
    for command in ("export", "show"):
        line = one_line(run_cli(command, str(fifo), timeout=60))
        assert "not a regular file" in line and str(fifo) in line


# -- a pipeline folder or a run that the system refuses -------------------------------------

@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    nb = write_notebook(tmp_path / "p.ipynb", "%%mlops params\nn = 3",
                        "%%mlops step make\nxs = list(range(n))",
                        "%%mlops step total\ntotal = sum(xs)")
    assert run_cli("export", str(nb)).returncode == 0
    return tmp_path / "p_pipeline"


def test_a_runs_dir_that_cannot_be_made_is_one_line(pipeline: Path, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    for runs_dir in ("/sys/x", str(tmp_path / "a_file" / "runs")):
        line = one_line(run_cli("run", str(pipeline), "--runs-dir", runs_dir))
        assert runs_dir in line and "--runs-dir" in line, line
    if default_store(pipeline).exists():  # a run refused before it starts is not recorded
        store = RunStore(default_store(pipeline))
        assert store.runs() == []
        store.close()


def test_show_of_a_pipeline_with_a_step_notebook_of_invalid_json(pipeline: Path) -> None:
    (pipeline / "steps" / "02_total.ipynb").write_text("{not json", encoding="utf-8")
    done = run_cli("show", str(pipeline))
    assert_no_traceback(done)
    if done.returncode != 0:
        assert "02_total.ipynb" in one_line(done)


def test_run_of_a_pipeline_with_a_step_notebook_of_invalid_json(pipeline: Path) -> None:
    (pipeline / "steps" / "02_total.ipynb").write_text("{not json", encoding="utf-8")
    line = one_line(run_cli("run", str(pipeline)))
    assert "02_total.ipynb" in line and "not valid JSON" in line


# -- a reader that goes away: `| head -n 1` -------------------------------------------------

def _head(*args: str) -> tuple[int, str, str]:
    """``jupyter mlops ARGS | head -n 1``: our exit code, head's output, our stderr."""
    with subprocess.Popen([sys.executable, "-m", "jupyter_mlops.cli", *args],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL) as ours:
        assert ours.stdout is not None and ours.stderr is not None
        with subprocess.Popen(["head", "-n", "1"], stdin=ours.stdout,
                              stdout=subprocess.PIPE) as head:
            ours.stdout.close()  # head alone reads it now, so its exit closes the pipe
            first, _ = head.communicate(timeout=120)
        stderr = ours.stderr.read().decode()
        return ours.wait(timeout=120), first.decode(), stderr


def _quietly_stopped(code: int, stderr: str) -> None:
    assert stderr == "", stderr
    assert code in (0, 141), code  # 0 when all of it fitted in the pipe before head left


def test_show_into_head_stops_quietly(tmp_path: Path) -> None:
    # a megabyte of output: far more than a pipe holds, so the reader leaves early
    nb = write_notebook(tmp_path / "big.ipynb", f"%%mlops params\nlabel = '{'x' * 1_000_000}'",
                        "%%mlops step a\ny = label")
    code, first, stderr = _head("show", str(nb))
    assert first.startswith("Pipeline `big`")
    _quietly_stopped(code, stderr)
    assert code == 141
    assert run_cli("export", str(nb)).returncode == 0
    for args in (("show", str(tmp_path / "big_pipeline")), ("show", str(nb), "--json")):
        code, first, stderr = _head(*args)
        assert first.strip()
        _quietly_stopped(code, stderr)


def test_runs_show_into_head_stops_quietly(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "store.sqlite")
    steps = [f"s{i}" for i in range(3000)]
    store.start_run("run-long", "long", "0" * 64, tmp_path / "run-long",
                    {f"p{i}": "v" * 50 for i in range(2000)}, {"python": "3"}, "test", steps)
    manifest = {"name": "x", "kind": "json", "file": "x.json", "sha256": "a" * 64}
    for step in steps:
        store.record_step(StepRecord("run-long", step, status="done", started=1.0, ended=2.0,
                                     outputs={"x": manifest}, files={"d.csv": "b" * 64}))
    store.finish_run("run-long", "succeeded", None)
    store.close()
    code, first, stderr = _head("runs", "--store", str(tmp_path / "store.sqlite"), "show",
                                "run-long")
    assert first.startswith("Run run-long of `long`: succeeded")
    _quietly_stopped(code, stderr)
    assert code == 141


# -- one damaged row of the run store ---------------------------------------------------------

def _store_of_three(tmp_path: Path) -> tuple[Path, list[str]]:
    """A store with three finished runs of one pipeline, oldest first."""
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    ids = [f"20250101-00000{i}-abcdef" for i in range(3)]
    for number, run_id in enumerate(ids):
        store.start_run(run_id, "pipe", "f" * 64, tmp_path / run_id, {"n": number},
                        {"python": "3.x", "steps": {}}, "test", ["load", "fit"])
        manifest = {"name": "df", "kind": "json", "file": "df.json", "sha256": "a" * 64}
        store.record_step(StepRecord(run_id, "load", status="done", started=1.0, ended=2.0,
                                     outputs={"df": manifest}))
        score = {"name": "score", "kind": "json", "file": "score.json", "sha256": "b" * 64,
                 "role": "metrics", "value": 0.5 + number / 10}
        store.record_step(StepRecord(run_id, "fit", status="done", started=2.0, ended=3.0,
                                     inputs={"df": {"step": "load", "sha256": "a" * 64}},
                                     outputs={"score": score}))
        store.finish_run(run_id, "succeeded", None)
    store.close()
    return path, ids


DAMAGE = {  # table, column, the damaged text, what the line says
    "run parameters": ("runs", "parameters", "{bad", "`parameters` column is not valid JSON"),
    "run environment": ("runs", "environment", "[1, 2]", "`environment` column is not a JSON"),
    "run trigger": ("runs", "trigger", "{", "`trigger` column is not valid JSON"),
    "step checks": ("steps", "checks", "nope", "`checks` column of step"),
    "step files": ("steps", "files", "{\"a\": ", "`files` column of step"),
    "output manifest": ("artifacts", "manifest", "{\"name\": ", "manifest of output"),
    "metric value": ("metrics", "value", "high", "metric `score`"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_one_damaged_row_breaks_only_its_own_run(damage: str, tmp_path: Path) -> None:
    path, ids = _store_of_three(tmp_path)
    table, column, text, said = DAMAGE[damage]
    bad, good = ids[1], ids[2]
    with sqlite3.connect(path) as db:
        changed = db.execute(f"UPDATE {table} SET {column}=? WHERE run_id=?", (text, bad))
        assert changed.rowcount >= 1
    store = ["--store", str(path)]

    listed = run_cli("runs", *store)
    assert_no_traceback(listed)
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(lines) == set(ids), listed.stdout
    assert "unreadable:" in lines[bad] and said in lines[bad], lines[bad]
    assert all("unreadable" not in lines[i] for i in ids if i != bad), listed.stdout

    as_json = run_cli("runs", *store, "--json")
    assert as_json.returncode == 0, as_json.stderr
    unreadable = {r["run_id"]: r["unreadable"] for r in json.loads(as_json.stdout)}
    assert said in unreadable.pop(bad) and set(unreadable.values()) == {None}

    for args in (("runs", "show", bad), ("lineage", f"{bad}:score"),
                 ("runs", "diff", bad, good)):
        line = one_line(run_cli(*args, *store))
        assert bad in line and "cannot be read" in line and said in line, line
    for args in (("runs", "show", good), ("lineage", f"{good}:score"),
                 ("runs", "diff", ids[0], good),
                 ("runs", "report", good, "-o", str(tmp_path / "report.html"))):
        done = run_cli(*args, *store)
        assert_no_traceback(done)
        assert done.returncode == 0, (args, done.stderr)
    assert (tmp_path / "report.html").is_file()


# -- a full disk while the store records a run -------------------------------------------------

_FULL_DISK = """
import errno, os, sqlite3, sys
from jupyter_mlops.cli.app import main
from jupyter_mlops.run.store import RunStore

class FullDisk:
    '''The store's connection, on a disk that fills up as step STEP is recorded.'''
    def __init__(self, db):
        self.db = db
    def __getattr__(self, name):
        return getattr(self.db, name)
    def execute(self, sql, *args):
        if sql.startswith("UPDATE steps"):
            raise {error}
        return self.db.execute(sql, *args)

record_step = RunStore.record_step
def full_disk(self, record):
    if record.step != {step!r}:
        return record_step(self, record)
    db, self.db = self.db, FullDisk(self.db)
    try:
        return record_step(self, record)
    finally:
        self.db = db

RunStore.record_step = full_disk
sys.exit(main(["run", {pipeline!r}]))
"""

#: How the disk refuses: the source of the error (for the CLI's process), the error, and
#: what the one line and the run's record must say.
ERRORS: dict[str, tuple[str, Any, str]] = {
    "OSError(ENOSPC)": ("OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))",
                        lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
                        os.strerror(errno.ENOSPC)),
    "SQLITE_FULL": ("sqlite3.OperationalError('database or disk is full')",
                    lambda: sqlite3.OperationalError("database or disk is full"),
                    "database or disk is full"),
}


def _records_a_refused_write(path: Path, said: str) -> Any:
    store = RunStore(path)
    try:
        (run,) = store.runs()
    finally:
        store.close()
    assert run.status == "failed", run
    assert run.error is not None and said in run.error and str(path) in run.error, run.error
    return run


@pytest.mark.parametrize("error", sorted(ERRORS))
def test_a_refused_write_is_the_error_of_the_run(error: str, tmp_path: Path) -> None:
    """In the store alone (no kernel): a run whose step could not be recorded has failed,
    though its steps all succeeded, and says why."""
    _, make_error, said = ERRORS[error]
    path = tmp_path / "store.sqlite"
    store = RunStore(path)
    store.start_run("run-1", "pipe", "f" * 64, tmp_path / "run-1", {}, {}, "test", ["a"])
    real = store.db

    class FullDisk:
        """The store's connection on a disk that is full from the step's record on."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def execute(self, sql: str, *args: Any) -> Any:
            if sql.startswith("UPDATE steps"):
                raise make_error()
            return real.execute(sql, *args)

    store.db = FullDisk()  # type: ignore[assignment]
    with pytest.raises(StoreWriteError) as caught:
        store.record_step(StepRecord("run-1", "a", status="done", started=1.0, ended=2.0))
    assert said in str(caught.value) and caught.value.exit_code == 1
    assert not real.in_transaction
    store.db = real
    store.finish_run("run-1", "succeeded", None)
    store.close()
    _records_a_refused_write(path, said)


@pytest.mark.kernel
def test_a_full_disk_while_recording_a_step_fails_the_run_with_its_reason(
        pipeline: Path) -> None:
    """The CLI process itself, with the store's disk full from the second step's record on
    (injected: a real disk cannot be filled at one exact write portably)."""
    raised, _, said = ERRORS["OSError(ENOSPC)"]
    code = _FULL_DISK.format(error=raised, step="total", pipeline=str(pipeline))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, stdin=subprocess.DEVNULL)
    assert_no_traceback(Completed(done.returncode, done.stdout, done.stderr))
    assert done.returncode == 1, done.stderr
    # the progress of the run on stderr, then one line that says why it failed
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0] == done.stderr.strip().splitlines()[-1], done.stderr
    assert said in errors[0] and "run store" in errors[0], errors[0]
    run = _records_a_refused_write(default_store(pipeline), said)
    assert run.step("make") is not None and run.step("make").status == "done"
