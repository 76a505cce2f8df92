"""Content-hash caching, end to end: which edits re-run which steps, and when a cached output
must not be trusted (its file changed or vanished). Real kernels, real CLI processes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.run.cache import environment, step_key
from jupyter_mlops.runtime._files import sha256_file

STEPS = ("a", "b", "c")
SETUP = "%%mlops setup\nimport pandas as pd"
PARAMS = "%%mlops params\nn = 3\nk = 2"
STEP_A = '%%mlops step a\ndf = pd.read_csv("data.csv")\ntotal = float(df["x"].sum()) * n'
STEP_B = "%%mlops step b\ndoubled = total * 2"
STEP_C = "%%mlops step c"
METRICS_C = "%%mlops metrics\nscore = doubled + k"


def _write(tmp_path: Path, step_b: str = STEP_B, export_it: bool = True) -> Path:
    """The notebook (a -> b -> c; only c uses k; a reads data.csv), exported; the pipeline."""
    if not (tmp_path / "data.csv").exists():
        (tmp_path / "data.csv").write_text("x\n1\n2\n3\n")
    nb = write_notebook(tmp_path / "pipe.ipynb", SETUP, PARAMS, STEP_A, step_b, STEP_C,
                        METRICS_C)
    if export_it:
        done = run_cli("export", str(nb))
        assert done.returncode == 0, done.stderr
    return tmp_path / "pipe_pipeline"


def _run(tmp_path: Path, *args: str) -> dict[str, Any]:
    """One `jupyter mlops run` with the test's store and runs folder; its run.json."""
    done = run_cli("run", str(tmp_path / "pipe_pipeline"), "--store",
                   str(tmp_path / "store.sqlite"), "--runs-dir", str(tmp_path / "runs"), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^Run (\S+) succeeded", done.stdout, re.M)
    assert match, done.stdout
    record = json.loads((tmp_path / "runs" / match.group(1) / "run.json").read_text())
    assert record["status"] == "succeeded"
    record["stderr"] = done.stderr
    return record


def _steps(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in record["steps"]}


def _ran(record: dict[str, Any]) -> set[str]:
    """The steps that really executed in this run (not reused from another)."""
    steps = _steps(record)
    assert all(s["status"] == "done" for s in steps.values()), steps
    return {name for name, s in steps.items() if s["cached_from"] is None}


def _shas(record: dict[str, Any]) -> dict[str, str]:
    """sha256 of each output as recorded."""
    return {f"{s['name']}.{n}": m["sha256"] for s in record["steps"]
            for n, m in s["outputs"].items()}


def _file_shas(record: dict[str, Any]) -> dict[str, str]:
    """sha256 of each output's file as it is on disk in this run's own folder."""
    folder = Path(record["folder"]) / "artifacts"
    return {f"{s['name']}.{n}": sha256_file(folder / s["name"] / m["file"])
            for s in record["steps"] for n, m in s["outputs"].items()}


def _source_file(record: dict[str, Any], step: str, output: str) -> Path:
    """The data file a step's output came from: the run the step really ran in."""
    state = _steps(record)[step]
    origin = state["cached_from"] or record["run_id"]
    return (Path(record["folder"]).parent / origin / "artifacts" / step
            / state["outputs"][output]["file"])


@pytest.mark.kernel
def test_unchanged_pipeline_reuses_every_step(tmp_path: Path) -> None:
    _write(tmp_path)
    first = _run(tmp_path)
    assert _ran(first) == set(STEPS)
    assert set(_shas(first)) == {"a.total", "b.doubled", "c.score"}
    assert _file_shas(first) == _shas(first)
    assert _steps(first)["a"]["files"] == {"data.csv": sha256_file(tmp_path / "data.csv")}

    second = _run(tmp_path)
    assert second["run_id"] != first["run_id"]
    assert _ran(second) == set()
    assert {s["cached_from"] for s in second["steps"]} == {first["run_id"]}
    # the reused outputs are in the new run's own folder, byte for byte the first run's
    assert _file_shas(second) == _shas(second) == _shas(first)
    assert _steps(second)["c"]["outputs"]["score"]["value"] == 38.0
    # no kernel ran: no executed step notebook was written
    assert not list((Path(second["folder"]) / "steps").glob("*.ipynb"))
    assert len(list((Path(first["folder"]) / "steps").glob("*.ipynb"))) == 3
    assert second["stderr"].count(f"outputs reused from run {first['run_id']}") == 3
    # the key of each step is the same in both runs
    assert [s["cache_key"] for s in first["steps"]] == [s["cache_key"] for s in second["steps"]]

    shown = run_cli("runs", "show", second["run_id"], "--store", str(tmp_path / "store.sqlite"))
    assert shown.returncode == 0, shown.stderr
    for step in STEPS:
        assert f"  {step}: done (reused from {first['run_id']})" in shown.stdout, shown.stdout
    listed = run_cli("runs", "--store", str(tmp_path / "store.sqlite"), "--json")
    runs = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert [s["cached_from"] for s in runs[second["run_id"]]["steps"]] == [first["run_id"]] * 3
    assert [s["cached_from"] for s in runs[first["run_id"]]["steps"]] == [None] * 3
    table = run_cli("runs", "--store", str(tmp_path / "store.sqlite")).stdout
    assert re.search(rf"^{second['run_id']}\s.*0 run, 3 cached", table, re.M), table
    assert re.search(rf"^{first['run_id']}\s.*3 run, 0 cached", table, re.M), table


@pytest.mark.kernel
def test_code_edits_rerun_the_edited_step_and_what_its_output_changes(tmp_path: Path) -> None:
    pipeline = _write(tmp_path)
    first = _run(tmp_path)
    code_b = PipelineSpec.read(pipeline).step("b").code_sha256

    # (a) b's code changes and so does its output: b re-runs, and c, whose input changed
    _write(tmp_path, "%%mlops step b\ndoubled = total * 3")
    tripled = _run(tmp_path)
    assert _ran(tripled) == {"b", "c"}
    assert _steps(tripled)["a"]["cached_from"] == first["run_id"]
    assert _shas(tripled)["a.total"] == _shas(first)["a.total"]
    assert _shas(tripled)["b.doubled"] != _shas(first)["b.doubled"]
    assert _steps(tripled)["c"]["outputs"]["score"]["value"] == 56.0

    # (a') b's code changes but its output does not: b re-runs, c is reused
    _write(tmp_path, "%%mlops step b\ndoubled = total + total + total")
    same_output = _run(tmp_path)
    assert _ran(same_output) == {"b"}
    assert _shas(same_output)["b.doubled"] == _shas(tripled)["b.doubled"]
    assert _steps(same_output)["c"]["cached_from"] == tripled["run_id"]

    # (b) a comment-only edit (and a reformat) of b: same code hash, nothing re-runs
    code_before = PipelineSpec.read(pipeline).step("b").code_sha256
    _write(tmp_path, "%%mlops step b\n# three times the total\ndoubled = (total +\n"
           "           total + total)  # same value")
    assert PipelineSpec.read(pipeline).step("b").code_sha256 == code_before != code_b
    commented = _run(tmp_path)
    assert _ran(commented) == set()
    assert _shas(commented) == _shas(same_output)


@pytest.mark.kernel
def test_parameter_and_data_changes_rerun_only_what_depends_on_them(tmp_path: Path) -> None:
    _write(tmp_path)
    first = _run(tmp_path)

    # (c) k is used by c only
    k5 = _run(tmp_path, "-p", "k=5")
    assert _ran(k5) == {"c"}
    assert {_steps(k5)[s]["cached_from"] for s in ("a", "b")} == {first["run_id"]}
    assert _steps(k5)["c"]["outputs"]["score"]["value"] == 41.0
    # ... and back to k=2: the first run's c is still there to reuse
    assert _ran(_run(tmp_path)) == set()

    # (d) the data a reads changes: a re-runs; its output changed, so b and c re-run
    (tmp_path / "data.csv").write_text("x\n1\n2\n3\n4\n")
    more = _run(tmp_path)
    assert _ran(more) == set(STEPS)
    assert _steps(more)["a"]["files"]["data.csv"] != _steps(first)["a"]["files"]["data.csv"]
    assert _shas(more)["a.total"] != _shas(first)["a.total"]
    assert _steps(more)["c"]["outputs"]["score"]["value"] == 2 * 30.0 + 2

    # the file changes but a's output does not: a re-runs, b and c are reused, which shows
    # the downstream re-runs above came from a's output hash, not from the file itself
    (tmp_path / "data.csv").write_text("x\n4\n3\n2\n1\n")
    shuffled = _run(tmp_path)
    assert _ran(shuffled) == {"a"}
    assert _shas(shuffled) == _shas(more)
    assert {_steps(shuffled)[s]["cached_from"] for s in ("b", "c")} == {more["run_id"]}


@pytest.mark.kernel
def test_an_edited_helper_module_beside_the_notebook_reruns_the_steps_importing_it(
        tmp_path: Path) -> None:
    """A step importing the user's own ``helpers.py`` (which imports ``consts.py``) had its
    results reused after either file changed: the numbers of the old code. Now the key
    covers both texts; a comment edited re-runs that step only (its output is the same)."""
    (tmp_path / "helpers.py").write_text("from consts import FACTOR\n\n\n"
                                         "def scale(x):\n    return x * FACTOR\n")
    (tmp_path / "consts.py").write_text("FACTOR = 2\n")
    _write(tmp_path, export_it=False)
    write_notebook(tmp_path / "pipe.ipynb", SETUP, PARAMS,
                   STEP_A + "\nimport helpers\ntotal = float(helpers.scale(total))",
                   STEP_B, STEP_C, METRICS_C)
    assert run_cli("export", str(tmp_path / "pipe.ipynb")).returncode == 0
    first = _run(tmp_path)
    assert _steps(first)["c"]["outputs"]["score"]["value"] == 2 * 36.0 + 2
    assert set(_steps(first)["a"]["files"]) >= {"import helpers", "import consts"}
    assert "import helpers" not in _steps(first)["b"]["files"]

    (tmp_path / "consts.py").write_text("FACTOR = 3\n")  # imported by helpers only
    tripled = _run(tmp_path)
    assert _ran(tripled) == set(STEPS)
    assert _steps(tripled)["c"]["outputs"]["score"]["value"] == 2 * 54.0 + 2

    (tmp_path / "helpers.py").write_text("from consts import FACTOR  # the factor\n\n\n"
                                         "def scale(x):\n    return x * FACTOR\n")
    commented = _run(tmp_path)
    assert _ran(commented) == {"a"}
    assert _shas(commented) == _shas(tripled)

    (tmp_path / "consts.py").write_text("FACTOR = 2\n")  # as in the first run: its a again
    back = _run(tmp_path)
    assert _ran(back) == {"a"}
    assert _steps(back)["c"]["cached_from"] == first["run_id"]


def test_step_key_depends_on_the_environment(tmp_path: Path) -> None:
    pipeline = _write(tmp_path, export_it=False)
    export(tmp_path / "pipe.ipynb")  # in-process: no kernel is needed for keys
    spec = PipelineSpec.read(pipeline)
    step = spec.step("a")
    values = {"n": 3, "k": 2}
    env = {"python": "3.11.4", "kernel": "python3", "packages": {"pandas": "2.2.0"}}
    key = step_key(step, values, {}, env, False)
    assert key == step_key(step, values, {}, json.loads(json.dumps(env)), False)
    newer = dict(env, packages={"pandas": "2.2.1"})
    assert step_key(step, values, {}, newer, False) != key
    assert step_key(step, values, {}, dict(env, python="3.12.0"), False) != key
    assert step_key(step, values, {}, dict(env, kernel="other"), False) != key
    # k is not a's parameter: its value is not part of a's key; n is
    assert step_key(step, {"n": 3, "k": 9}, {}, env, False) == key
    assert step_key(step, {"n": 4, "k": 2}, {}, env, False) != key
    # the environment a real run records holds the versions of what the step imports
    import pandas

    recorded = environment(spec.kernel["name"], ["pandas", "json"], pipeline)
    assert recorded["packages"]["pandas"] == pandas.__version__
    assert recorded["kernel"] == "python3"


@pytest.mark.kernel
def test_a_tampered_cached_artifact_is_not_reused(tmp_path: Path) -> None:
    _write(tmp_path)
    first = _run(tmp_path)
    second = _run(tmp_path)
    assert _ran(second) == set()
    source = _source_file(second, "a", "total")
    assert source.parent.parent.parent.name == first["run_id"]
    good = source.read_bytes()
    with open(source, "r+b") as handle:  # overwrite the bytes in place, same length
        handle.write(b"7" * len(good))
    assert sha256_file(source) != _shas(first)["a.total"]

    third = _run(tmp_path)
    assert _ran(third) == {"a"}, "a cached output whose hash fails must not be reused"
    assert _file_shas(third) == _shas(third) == _shas(first)
    assert {_steps(third)[s]["cached_from"] for s in ("b", "c")} == {first["run_id"]}
    # the cache now points at the good copy: the next run reuses a again
    fourth = _run(tmp_path)
    assert _ran(fourth) == set()
    assert _steps(fourth)["a"]["cached_from"] == third["run_id"]


@pytest.mark.kernel
def test_force_reruns_all_or_the_named_step(tmp_path: Path) -> None:
    _write(tmp_path)
    first = _run(tmp_path)
    forced = _run(tmp_path, "--force")
    assert _ran(forced) == set(STEPS)
    assert _shas(forced) == _shas(first)
    only_b = _run(tmp_path, "--force", "b")
    assert "b" in _ran(only_b)
    assert _steps(only_b)["a"]["cached_from"] is not None
    # b's output is the same bytes as before, so c's key is unchanged and c must be reused
    assert _shas(only_b)["b.doubled"] == _shas(first)["b.doubled"]
    assert _ran(only_b) == {"b"}
    unknown = run_cli("run", str(tmp_path / "pipe_pipeline"), "--store",
                      str(tmp_path / "store.sqlite"), "--force", "nope")
    assert unknown.returncode == 2
    assert len(unknown.stderr.strip().splitlines()) == 1, unknown.stderr


@pytest.mark.kernel
def test_a_deleted_source_run_folder_is_a_miss(tmp_path: Path) -> None:
    _write(tmp_path)
    first = _run(tmp_path)
    k5 = _run(tmp_path, "-p", "k=5")
    assert _ran(k5) == {"c"}
    shutil.rmtree(first["folder"])
    # every k=2 output came from the deleted run: each step runs again, no error
    again = _run(tmp_path)
    assert _ran(again) == set(STEPS)
    assert _shas(again) == _shas(first)
    assert _file_shas(again) == _shas(first)
    # k=5: a and b from the new run, c from the k=5 run whose folder is still there
    k5_again = _run(tmp_path, "-p", "k=5")
    assert _ran(k5_again) == set()
    assert [s["cached_from"] for s in k5_again["steps"]] == [again["run_id"], again["run_id"],
                                                             k5["run_id"]]


@pytest.mark.kernel
def test_a_reused_output_gets_the_manifest_the_store_recorded(tmp_path: Path) -> None:
    """The earlier run's folder may be written by others since; the new run's folder gets
    the manifest the run store recorded, not the one found there."""
    _write(tmp_path)
    first = _run(tmp_path)
    earlier = Path(first["folder"]) / "artifacts" / "a" / "total.json"
    forged = {**json.loads(earlier.read_text()), "kind": "npy", "file": "total.npy",
              "python_type": "numpy.ndarray"}
    earlier.write_text(json.dumps(forged))
    second = _run(tmp_path, "-p", "k=5")  # a and b reused, c runs and loads b's output
    assert _ran(second) == {"c"}
    placed = json.loads((Path(second["folder"]) / "artifacts" / "a" / "total.json").read_text())
    assert placed == _steps(first)["a"]["outputs"]["total"]
    assert placed["kind"] == "json"


@pytest.mark.kernel
def test_reusing_into_a_folder_that_already_holds_the_outputs_leaves_nothing_behind(
        tmp_path: Path) -> None:
    """A resumed run may place a cached step's files where they already are (hard links of
    the same file): nothing changes, no temporary name is left, and placing again works."""
    from jupyter_mlops.run.cache import reuse
    from jupyter_mlops.run.store import RunStore

    _write(tmp_path)
    first = _run(tmp_path)
    step = PipelineSpec.read(tmp_path / "pipe_pipeline").step("a")
    target = tmp_path / "again" / "artifacts" / "a"
    store = RunStore(tmp_path / "store.sqlite")
    try:
        for _ in range(3):
            hit = reuse(store, _steps(first)["a"]["cache_key"], step, target)
            assert hit is not None and hit[0] == first["run_id"]
    finally:
        store.close()
    outputs = _steps(first)["a"]["outputs"]
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [f"{name}.json" for name in outputs] + [m["file"] for m in outputs.values()])
    assert sha256_file(target / outputs["total"]["file"]) == outputs["total"]["sha256"]


@pytest.mark.kernel
def test_a_step_is_keyed_on_its_inputs_however_late_their_outputs_are_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner reads a finished step's outputs after its kernel ends; a step after it
    waits for that, not for the status (which said done first): submitted in between, `b`
    was keyed without `a`'s output hash and ran again in the next run of the same inputs.
    Here reading `a`'s outputs takes longer than the runner's 0.1 s look at its steps."""
    import time

    from jupyter_mlops.run import inprogress, runner

    _write(tmp_path)
    read = inprogress._read_outputs

    def slowly(folder: Path, step: Any) -> dict[str, dict[str, Any]]:
        found = read(folder, step)
        if step.name == "a":
            time.sleep(3 * inprogress.STOP_POLL)
        return found

    monkeypatch.setattr(inprogress, "_read_outputs", slowly)
    settings = {"store": tmp_path / "store.sqlite", "runs_dir": tmp_path / "runs", "jobs": 2}
    first = runner.run_pipeline(tmp_path / "pipe_pipeline", **settings)
    assert first.status == "succeeded", first.error
    monkeypatch.setattr(inprogress, "_read_outputs", read)
    second = runner.run_pipeline(tmp_path / "pipe_pipeline", **settings)
    assert [s.cached_from for s in second.steps] == [first.run_id] * 3
    assert [s.cache_key for s in second.steps] == [s.cache_key for s in first.steps]


_LATE_HIT = '''
import os, signal, sys, time
from jupyter_mlops.run import inprogress, runner

found = inprogress.reuse

def late(store, key, step, target):
    hit = found(store, key, step, target)
    if step.name == "b":  # a stop while b's files are hashed, which outlasts the stop's wait
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(inprogress.HALT_WAIT + 2)
    return hit

inprogress.reuse = late
result = runner.run_pipeline(sys.argv[1], store=sys.argv[2], runs_dir=sys.argv[3])
print(result.run_id, result.status, *[s.status for s in result.steps])
'''


@pytest.mark.kernel
def test_a_cache_hit_found_after_the_run_ended_changes_nothing(tmp_path: Path) -> None:
    """A SIGTERM while a step's cached files are still being hashed: the run is recorded
    cancelled, with that step; the hit found after that does not make it done in the
    store, in run.json or in what the run returned."""
    from jupyter_mlops.run.store import RunStore

    _write(tmp_path)
    _run(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", _LATE_HIT, str(tmp_path / "pipe_pipeline"),
         str(tmp_path / "store.sqlite"), str(tmp_path / "runs")],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    run_id, status, *steps = done.stdout.split()
    assert (status, steps) == ("cancelled", ["done", "cancelled", "cancelled"]), done.stdout
    record = json.loads((tmp_path / "runs" / run_id / "run.json").read_text())
    assert [s["status"] for s in record["steps"]] == steps and record["status"] == status
    store = RunStore(tmp_path / "store.sqlite")
    try:
        assert [s.status for s in store.run(run_id).steps] == steps
    finally:
        store.close()
