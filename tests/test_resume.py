"""--resume, --only and --from, with real kernels: what re-runs and what is reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_notebook

pytestmark = pytest.mark.kernel

CELLS = (
    "%%mlops step a\nv = [1, 2]",
    "%%mlops step b\nimport os\nif os.path.exists('FAIL'):\n    raise RuntimeError('flaky')\n"
    "w = v + [3]",
    "%%mlops step c\nt = sum(w)",
    "%mlops metrics t",
)


@pytest.fixture
def pipeline(tmp_path: Path, cli) -> Path:
    write_notebook(tmp_path / "r.ipynb", *CELLS)
    assert cli("export", str(tmp_path / "r.ipynb")).returncode == 0
    return tmp_path / "r_pipeline"


def _steps(pipeline: Path, run_id: str) -> dict[str, dict]:
    record = json.loads((pipeline / "runs" / run_id / "run.json").read_text())
    return {s["name"]: s for s in record["steps"]}


def _latest(pipeline: Path) -> str:
    """The run that started last (run ids order by the second only: two runs of one second
    sort by their random part)."""
    records = [json.loads((p / "run.json").read_text())
               for p in (pipeline / "runs").iterdir()]
    return max(records, key=lambda r: r["started"])["run_id"]


def test_resume_reruns_only_what_failed_in_the_same_run(pipeline: Path, cli) -> None:
    flag = pipeline.parent / "FAIL"
    flag.write_text("")
    failed = cli("run", str(pipeline))
    assert failed.returncode == 1
    run_id = _latest(pipeline)
    a_before = _steps(pipeline, run_id)["a"]
    flag.unlink()
    resumed = cli("run", str(pipeline), "--resume", run_id)
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in (pipeline / "runs").iterdir()] == [run_id]  # same run folder
    steps = _steps(pipeline, run_id)
    assert steps["a"]["started"] == a_before["started"]  # a was not run again
    assert steps["b"]["status"] == steps["c"]["status"] == "done"
    assert steps["c"]["outputs"]["t"]["value"] == 6
    listed = json.loads(cli("runs", "-C", str(pipeline), "--json").stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [(run_id, "succeeded")]


def test_only_and_from_reuse_upstream_results(pipeline: Path, cli) -> None:
    assert cli("run", str(pipeline)).returncode == 0
    only = cli("run", str(pipeline), "--only", "c")
    assert only.returncode == 0, only.stderr
    steps = _steps(pipeline, _latest(pipeline))
    assert steps["a"]["cached_from"] and steps["b"]["cached_from"]
    assert steps["c"]["cached_from"] is None and steps["c"]["status"] == "done"
    start = cli("run", str(pipeline), "--from", "b")
    assert start.returncode == 0, start.stderr
    steps = _steps(pipeline, _latest(pipeline))
    assert steps["a"]["cached_from"]
    assert steps["b"]["cached_from"] is None and steps["c"]["cached_from"] is None


def test_only_without_upstream_results_says_what_to_do(pipeline: Path, cli) -> None:
    done = cli("run", str(pipeline), "--only", "c")
    assert done.returncode == 1
    assert "step `a` has no recorded result" in done.stderr
    assert "run the whole pipeline first" in done.stderr


def test_bad_selections_are_user_errors(pipeline: Path, cli) -> None:
    for args, message in ((["--only", "zz"], "no step `zz`"),
                          (["--only", "a", "--from", "b"], "not both"),
                          (["--resume", "nope"], "no run `nope`")):
        done = cli("run", str(pipeline), *args)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
