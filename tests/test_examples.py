"""Both examples, exported and run for real, score exactly as the notebooks themselves do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import EXAMPLES, run_cli

from jupyter_mlops.pipeline.spec import PipelineSpec

pytestmark = pytest.mark.kernel

EXAMPLE_NOTEBOOKS = [EXAMPLES / "churn" / "churn.ipynb", EXAMPLES / "diabetes" / "diabetes.ipynb"]


def _notebook_metrics(notebook: Path, names: list[str], tmp_path: Path) -> dict[str, float]:
    """Run the original notebook with papermill, plus one cell that prints the metrics."""
    nb = nbformat.read(str(notebook), as_version=4)
    probe = f"import json\nprint(json.dumps({{n: globals()[n] for n in {names!r}}}))"
    nb.cells.append(nbformat.v4.new_code_cell(probe))
    source = notebook.parent / f".probe-{notebook.name}"
    nbformat.write(nb, str(source))
    # the magics capture into <stem>.mlops.json beside the notebook they are told of
    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook))
    try:
        subprocess.run([sys.executable, "-m", "papermill", str(source),
                        str(tmp_path / "original.ipynb"), "--cwd", str(notebook.parent),
                        "--no-progress-bar"], check=True, capture_output=True, env=env)
    finally:
        source.unlink()
    executed = nbformat.read(str(tmp_path / "original.ipynb"), as_version=4)
    return json.loads(executed.cells[-1].outputs[0]["text"])


@pytest.mark.parametrize("notebook", EXAMPLE_NOTEBOOKS, ids=lambda p: p.stem)
def test_example_pipeline_scores_as_the_notebook(notebook: Path, tmp_path: Path) -> None:
    # a copy, so the test writes nothing into the repository
    work = tmp_path / notebook.parent.name
    shutil.copytree(notebook.parent, work, ignore=shutil.ignore_patterns("*_pipeline"))
    copy = work / notebook.name
    names = [o.name for s in _spec_of(copy).steps for o in s.outputs if o.role == "metrics"]
    theirs = _notebook_metrics(copy, names, tmp_path)  # also captures the contract
    exported = run_cli("export", str(copy))
    assert exported.returncode == 0, exported.stderr
    folder = work / f"{notebook.stem}_pipeline"
    spec = PipelineSpec.read(folder)
    assert len(spec.steps) >= 5
    metrics = [o.name for s in spec.steps for o in s.outputs if o.role == "metrics"]
    assert metrics

    ran = run_cli("run", str(folder), "--runs-dir", str(tmp_path / "runs"))
    assert ran.returncode == 0, ran.stderr
    (run_folder,) = (tmp_path / "runs").iterdir()
    record = json.loads((run_folder / "run.json").read_text())
    assert record["status"] == "succeeded"
    ours = {name: manifest["value"] for step in record["steps"]
            for name, manifest in step["outputs"].items() if name in metrics}

    assert ours == theirs
    assert all(isinstance(v, float) for v in ours.values())
    # the run kept the contract the notebook recorded: every check passed
    checks = [c for step in record["steps"] for c in step["checks"]]
    assert {c["check"] for c in checks} == {"schema", "drift", "metric"}
    assert all(c["ok"] for c in checks), [c for c in checks if not c["ok"]]

    tested = run_cli("test", str(folder))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "failed" not in tested.stdout and "skipped" not in tested.stdout
    if notebook.stem == "churn":
        _a_raw_sample_is_compared_with_the_raw_frame(work, folder, tmp_path)


def _a_raw_sample_is_compared_with_the_raw_frame(work: Path, folder: Path,
                                                 tmp_path: Path) -> None:
    """A random half of the raw file is raw input: compared with the frame the load step
    read, not the cleaned one (NaN in the file became "Unknown" in the clean step)."""
    import pandas as pd

    sample = tmp_path / "half.csv"
    pd.read_csv(work / "data" / "churn.csv").sample(frac=0.5, random_state=3).to_csv(
        sample, index=False)
    done = run_cli("monitor", str(folder), "--data", str(sample), "--report",
                   str(tmp_path / "monitor"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "monitor" / "monitor.json").read_text())
    assert report["reference"]["stage"] == "raw input", report["reference"]
    assert report["reference"]["step"] == "load"
    assert report["drift"]["drifted"] == [] and report["healthy"]
    # with labels, the raw rows go through the notebook's prepare cells first
    done = run_cli("monitor", str(folder), "--data", str(sample), "--labels", "churned",
                   "--report", str(tmp_path / "labelled"))
    assert done.returncode in (0, 3), done.stdout + done.stderr
    report = json.loads((tmp_path / "labelled" / "monitor.json").read_text())
    assert report["metrics_on"].startswith("the new rows prepared by the prepare cells (13, 14)")
    computed = {m["name"]: m["value"] for m in report["metrics"] if m["value"] is not None}
    assert {"accuracy", "f1", "roc_auc"} <= set(computed), report["metrics"]
    assert "metrics on: the new rows prepared by the prepare cells" in done.stdout
    assert report["model_input"]["drift"]["drifted"] == []


def _spec_of(notebook: Path) -> PipelineSpec:
    from jupyter_mlops.pipeline.export import plan

    return plan(notebook)[1]
