"""Two runs side by side: ``run.compare.compare_runs``, the text of ``jupyter mlops runs diff``
that renders it, and ``GET /mlops/runs/A/diff/B`` against a real jupyter_server with runs
that really ran."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook
from test_server import call
from tornado.httpclient import HTTPClientError
from wire import assert_wire, interfaces

from jupyter_mlops.run.compare import Compared, RunComparison, compare_runs
from jupyter_mlops.run.records import RunRecord, StepRecord
from jupyter_mlops.run.runsview import runs_diff

#: A pipeline that reads a data file, takes a parameter and makes a metric: a run takes
#: seconds.
CELLS = [
    ("import pandas as pd", ["mlops:setup"]),
    ("scale = 2", ["mlops:params"]),
    ('df = pd.read_csv("data.csv")\nvalues = [x * scale for x in df["x"]]', ["mlops:step=make"]),
    ("total = float(sum(values))", ["mlops:step=total"]),
    ("score = total / 100", ["mlops:metrics"]),
]


def two_runs(folder: Path) -> tuple[Path, list[str]]:
    """``folder/work/small.ipynb`` exported and run twice with the CLI, as a user would:
    with its default ``scale = 2``, then with ``-p scale=3``; the pipeline and the run ids,
    oldest first."""
    (folder / "work").mkdir(parents=True, exist_ok=True)
    (folder / "work" / "data.csv").write_text("x\n1\n2\n3\n4\n")
    notebook = write_notebook(folder / "work" / "small.ipynb", *CELLS)
    assert run_cli("export", str(notebook)).returncode == 0
    pipeline = folder / "work" / "small_pipeline"
    ids = []
    for given in ([], ["-p", "scale=3"]):
        done = run_cli("run", str(pipeline), *given)
        assert done.returncode == 0, done.stdout + done.stderr
        ids.append(done.stdout.split()[1])  # "Run ID succeeded in ..."
    return pipeline, ids


def record(run_id: str, parameters: dict[str, Any], metrics: dict[str, float],
           digest: str) -> RunRecord:
    run = RunRecord(run_id, "p", "0" * 64, "succeeded", 1.0, "/runs", parameters=parameters,
                    metrics=metrics)
    run.steps = [StepRecord(run_id, "load", files={"data.csv": "d" * 64},
                            outputs={"df": {"sha256": digest, "kind": "parquet"}})]
    return run


def test_compare_runs_puts_each_name_side_by_side() -> None:
    a = record("run-a", {"k": 2, "n": 1, "gone": "x"}, {"score": 10.0, "loss": 0.5}, "1" * 64)
    b = record("run-b", {"k": 5, "n": 1, "new": [1, 2]}, {"score": 11.5, "loss": 0.5}, "2" * 64)
    c = compare_runs(a, b)
    assert (c.a, c.b) == ("run-a", "run-b")
    assert c.parameters == [
        Compared("gone", "x", None, True, False, True),
        Compared("k", 2, 5, True, True, True),
        Compared("n", 1, 1, True, True, False),
        Compared("new", None, [1, 2], False, True, True)]
    assert c.metrics == [Compared("loss", 0.5, 0.5, True, True, False, 0.0),
                         Compared("score", 10.0, 11.5, True, True, True, 1.5)]
    assert c.files == [Compared("load:data.csv", "d" * 64, "d" * 64, True, True, False)]
    assert c.outputs == [Compared("load.df", "1" * 64, "2" * 64, True, True, True)]
    # the same in the other direction: the difference changes sign
    assert compare_runs(b, a).metrics[1].difference == -1.5
    assert compare_runs(a, a).parameters[1].changed is False


def test_runs_diff_renders_the_comparison() -> None:
    """The CLI's text holds the comparison's rows: a value missing is `-`, a hash cut to 12
    characters, a changed row marked `*`."""
    a = record("run-a", {"k": 2, "gone": "x"}, {"score": 10.0}, "1" * 64)
    b = record("run-b", {"k": 5}, {"score": 11.5}, "2" * 64)
    rows = {" ".join(line.split()[:2]): line.split()[2:] for line in
            runs_diff(a, b).splitlines()[1:-1]}
    assert rows == {"param gone": ["*", "x", "-"], "param k": ["*", "2", "5"],
                    "file load:data.csv": ["d" * 12, "d" * 12],
                    "output load.df": ["*", "1" * 12, "2" * 12],
                    "metric score": ["*", "10", "11.5"]}


def test_the_wire_types_declare_the_comparison_field_for_field() -> None:
    for interface, kind in (("IRunComparison", RunComparison), ("ICompared", Compared)):
        declared = set(interfaces()[interface])
        assert declared == {f.name for f in dataclasses.fields(kind)}, interface
    a = record("run-a", {"k": 2}, {"score": 10.0}, "1" * 64)
    data = json.loads(json.dumps(compare_runs(a, record("run-b", {}, {}, "2" * 64)).to_dict()))
    assert_wire(data, "IRunComparison")


# -- GET /mlops/runs/A/diff/B ------------------------------------------------------------------

@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load our extension, as the jupyter-config file does for an installed package."""
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


@pytest.mark.kernel
async def test_the_route_compares_two_real_runs(jp_fetch: Any, jp_root_dir: Path) -> None:
    _, (first, second) = two_runs(jp_root_dir)
    where = {"pipeline": "work/small_pipeline"}
    code, data = await call(jp_fetch, "GET", "runs", first, "diff", second, params=where)
    assert code == 200, data
    assert_wire(data, "IRunComparison")
    assert (data["a"], data["b"]) == (first, second)
    scale = {r["name"]: r for r in data["parameters"]}["scale"]
    assert (scale["a"], scale["b"], scale["changed"]) == (2, 3, True)
    score = {r["name"]: r for r in data["metrics"]}["score"]
    assert (score["a"], score["b"], score["changed"]) == (0.2, 0.3, True)
    assert score["difference"] == pytest.approx(0.1)
    files = {r["name"]: r for r in data["files"]}
    assert not files["make:data.csv"]["changed"] and len(files["make:data.csv"]["a"]) == 64
    assert {r["name"] for r in data["outputs"] if r["changed"]} >= {"make.values", "total.score"}
    # a part of a run id that names one run finds it, as on the command line
    code, again = await call(jp_fetch, "GET", "runs", first[-6:], "diff", second, params=where)
    assert code == 200 and again == data


@pytest.mark.kernel
async def test_the_route_refuses_in_one_json_line(jp_fetch: Any, jp_root_dir: Path) -> None:
    _, (first, _) = two_runs(jp_root_dir)
    where = {"pipeline": "work/small_pipeline"}
    code, data = await call(jp_fetch, "GET", "runs", first, "diff", "20990101-000000-abcdef",
                            params=where)
    assert code == 404 and data["cell"] is None, data
    assert data["error"] == ("no run `20990101-000000-abcdef` in work/small_pipeline/.mlops/"
                             "store.sqlite; `jupyter mlops runs` lists them")
    assert str(jp_root_dir) not in data["error"]
    code, data = await call(jp_fetch, "GET", "runs", first, "diff", "no*run", params=where)
    assert code == 400 and "not a run id" in data["error"], data
    for pipeline, status in (("../outside", 403), ("work", 404)):
        code, data = await call(jp_fetch, "GET", "runs", first, "diff", first,
                                params={"pipeline": pipeline})
        assert code == status and "\n" not in data["error"], data
    (jp_root_dir / "fresh").mkdir()
    (jp_root_dir / "fresh" / "pipeline.yaml").write_text(
        (jp_root_dir / "work" / "small_pipeline" / "pipeline.yaml").read_text())
    code, data = await call(jp_fetch, "GET", "runs", first, "diff", first,
                            params={"pipeline": "fresh"})
    assert code == 404 and data["error"] == "`fresh` has no runs yet; run it first", data
    with pytest.raises(HTTPClientError) as err:  # the token is required
        await jp_fetch("mlops", "runs", first, "diff", first, params=where,
                       headers={"Authorization": ""})
    assert err.value.code == 403
