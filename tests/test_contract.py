"""The contract end to end, with real kernels: capture in the notebook, check in every run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_capturing, write_notebook

from jupyter_mlops.pipeline.spec import PipelineSpec

pytestmark = pytest.mark.kernel

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
    "%%mlops params\nC = 1.0  # regularisation\ndata_path = 'data.csv'",
    "%%mlops step load\nraw = pd.read_csv(data_path)",
    "%%mlops data df\ndf = raw.dropna()",
    "df['ratio'] = df['a'] / (df['b'].abs() + 1)",
    "%%mlops step train\nX, y = df[['a', 'b', 'ratio']], df['label']",
    "%%mlops model model\nmodel = LogisticRegression(C=C).fit(X, y)",
    "%%mlops metrics accuracy\naccuracy = float(model.score(X, y))",
)


def _data(path: Path, rows: int = 400, shift: float = 0.0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1, rows)
    b = rng.normal(shift, 1, rows)
    label = (a + 0.5 * b + rng.normal(0, 0.5, rows) > 1.5 * shift).astype(int)
    pd.DataFrame({"a": a, "b": b, "label": label}).to_csv(path, index=False)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notebook run once (capturing its contract), then exported."""
    root = tmp_path_factory.mktemp("contract")
    _data(root / "data.csv")
    notebook = write_notebook(root / "model.ipynb", *CELLS)
    run_capturing(notebook, root)
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "export", str(notebook)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return root / "model_pipeline"


def _run(pipeline: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "run", str(pipeline),
                           "-j", "1", *args], capture_output=True, text=True)


def test_export_carries_the_contract(pipeline: Path) -> None:
    spec = PipelineSpec.read(pipeline)
    (entry,) = spec.checks["data"].values()
    assert entry["step"] == "load" and entry["variable"] == "df" and entry["rows"] == 400
    profile = json.loads((pipeline / entry["file"]).read_text())
    assert [c["name"] for c in profile["columns"]] == ["a", "b", "label"]
    rule = spec.checks["metrics"]["accuracy"]
    assert rule["direction"] == "higher"
    assert rule["min"] == pytest.approx(rule["value"] * 0.95)


def test_a_run_on_the_same_data_passes_its_checks(pipeline: Path, tmp_path: Path) -> None:
    done = _run(pipeline, "--runs-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (run,) = tmp_path.iterdir()
    record = json.loads((run / "run.json").read_text())
    checks = [c for s in record["steps"] for c in s["checks"]]
    assert {c["check"] for c in checks} == {"schema", "drift", "metric"}
    assert all(c["ok"] for c in checks)
    assert "check(s) passed" in done.stdout


def test_a_dropped_column_fails_the_step_naming_it(pipeline: Path, tmp_path: Path) -> None:
    pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]}).to_csv(tmp_path / "thin.csv", index=False)
    done = _run(pipeline, "-p", f"data_path={tmp_path / 'thin.csv'}",
                "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "step `load` failed at cell 5 of model.ipynb: ContractError" in last
    assert "column `b` is missing" in last


def test_shifted_data_warns_and_fails_on_request(pipeline: Path, tmp_path: Path) -> None:
    _data(tmp_path / "shifted.csv", shift=3.0, seed=1)
    args = ("-p", f"data_path={tmp_path / 'shifted.csv'}")
    warned = _run(pipeline, *args, "--runs-dir", str(tmp_path / "a"))
    assert warned.returncode == 0, warned.stderr
    assert "load: warning: `df` drifted in 2 of" in warned.stdout
    assert "columns (a, b)" in warned.stdout
    failed = _run(pipeline, *args, "--fail-on-drift", "--runs-dir", str(tmp_path / "b"))
    assert failed.returncode == 1
    assert "`df` drifted from the data the notebook saw" in failed.stderr


def test_drift_in_a_few_columns_is_a_warning_in_the_step_and_the_summary(
        pipeline: Path, tmp_path: Path) -> None:
    _data(tmp_path / "one.csv", seed=2)
    frame = pd.read_csv(tmp_path / "one.csv")
    frame["a"] = frame["a"] + 3.0  # one column of four: under the share of dataset drift
    frame.to_csv(tmp_path / "one.csv", index=False)
    done = _run(pipeline, "-p", f"data_path={tmp_path / 'one.csv'}", "--runs-dir",
                str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    assert "load: warning: `df` drifted in 1 of" in done.stdout
    (folder,) = (tmp_path / "runs").iterdir()
    executed = (folder / "steps" / "01_load.ipynb").read_text()
    assert "warning: `df` matches its schema but drifted in 1 of" in executed


def test_a_worse_model_fails_with_both_numbers(pipeline: Path, tmp_path: Path) -> None:
    done = _run(pipeline, "-p", "C=0.00001", "--runs-dir", str(tmp_path))
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "step `train` failed at cell 9 of model.ipynb: ContractError: metric `accuracy` is" \
        in last
    assert "under its threshold" in last and "the notebook had" in last


def _generated_tests(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "test",
                           str(root / "model_pipeline")], capture_output=True, text=True)


def _recorded(pipeline: Path) -> tuple[list[str], str | None]:
    """The runs in the pipeline's own store and the one it serves."""
    from jupyter_mlops.run.store import RunStore, default_store

    if not default_store(pipeline).exists():
        return [], None
    store = RunStore(default_store(pipeline))
    try:
        return [r.run_id for r in store.runs()], store.served_run()
    finally:
        store.close()


def test_generated_tests_pass_then_catch_changes(pipeline: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(pipeline.parent, root, ignore=shutil.ignore_patterns("runs"))
    text = (root / "model_pipeline" / "tests" / "test_pipeline.py").read_text()
    assert "LogisticRegression" in text and "accuracy" in text
    before = _recorded(root / "model_pipeline")
    passed = _generated_tests(root)
    assert passed.returncode == 0, passed.stdout
    # runs, the data contract, the model twice (kind and parameters, predictions), the metric
    assert "5 passed" in passed.stdout and "skipped" not in passed.stdout
    # a test run stays out of the pipeline's own store: never served, never listed
    assert _recorded(root / "model_pipeline") == before

    original = (root / "data.csv").read_text()
    pd.read_csv(root / "data.csv").drop(columns=["b"]).to_csv(root / "data.csv", index=False)
    dropped = _generated_tests(root)
    assert dropped.returncode == 1
    assert "column `b` is missing" in dropped.stdout

    _data(root / "data.csv", shift=3.0, seed=1)
    shifted = _generated_tests(root)
    assert shifted.returncode == 1
    assert "drifted from the data the notebook saw" in shifted.stdout

    (root / "data.csv").write_text(original)
    spec_file = root / "model_pipeline" / "pipeline.yaml"
    spec_file.write_text(spec_file.read_text().replace("default: 1.0", "default: 1.0e-05"))
    worse = _generated_tests(root)
    assert worse.returncode == 1
    assert "under its threshold" in worse.stdout


def test_a_passing_drift_check_with_drifted_columns_is_still_a_warning() -> None:
    # a run whose data drifted in a few columns printed "load: 2 check(s) passed"
    from jupyter_mlops.run.report import check_notes
    from jupyter_mlops.run.results import StepResult

    step = StepResult("load", checks=[
        {"check": "schema", "variable": "df", "ok": True, "problems": []},
        {"check": "drift", "variable": "df", "ok": True, "drifted": ["a", "b"],
         "columns": {c: {} for c in "abcdefgh"}}])
    assert check_notes(step) == [
        "load: warning: `df` drifted in 2 of 8 columns (a, b), under the share that counts as "
        "dataset drift", "load: 1 check(s) passed"]
