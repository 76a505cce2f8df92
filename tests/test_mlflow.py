"""--mlflow mirrors a run into a real local MLflow store (SQLite), model as skops."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_notebook

pytestmark = pytest.mark.kernel

QUERY = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
(run,) = client.search_runs([experiment.experiment_id])
def walk(path=None):
    found = []
    for item in client.list_artifacts(run.info.run_id, path):
        found += walk(item.path) if item.is_dir else [item.path]
    return found
print(json.dumps({"params": run.data.params, "metrics": run.data.metrics,
                  "tags": run.data.tags, "status": run.info.status,
                  "name": run.info.run_name, "artifacts": sorted(walk())}))
"""


def test_a_run_is_mirrored_into_mlflow(tmp_path: Path, cli) -> None:
    write_notebook(
        tmp_path / "m.ipynb", "%%mlops params\nC = 0.5",
        "%%mlops step train\nfrom sklearn.datasets import load_iris\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "X, y = load_iris(return_X_y=True)\nclf = LogisticRegression(C=C, max_iter=300).fit(X, y)",
        "%mlops model clf",
        "%%mlops step score\naccuracy = float(clf.score(X, y))", "%mlops metrics accuracy")
    assert cli("export", str(tmp_path / "m.ipynb")).returncode == 0
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli("run", str(tmp_path / "m_pipeline"), "--mlflow", uri, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Mirrored to MLflow at {uri}: run " in done.stdout
    run_id = json.loads((next((tmp_path / "m_pipeline" / "runs").iterdir()) / "run.json")
                        .read_text())["run_id"]
    query = subprocess.run([sys.executable, "-c", QUERY, uri, "m"], capture_output=True,
                           text=True, check=True)
    mirrored = json.loads(query.stdout)
    assert mirrored["name"] == run_id and mirrored["status"] == "FINISHED"
    assert mirrored["params"] == {"C": "0.5"}
    assert 0.9 < mirrored["metrics"]["accuracy"] <= 1.0
    assert mirrored["tags"]["jupyter_mlops.status"] == "succeeded"
    assert "models/train/clf.skops" in mirrored["artifacts"]
    assert "requirements.txt" in mirrored["artifacts"] and "run.json" in mirrored["artifacts"]
    assert "notebooks/01_train.ipynb" in mirrored["artifacts"]
    # artifacts beside the database, not in ./mlruns of the folder the command ran in
    assert (tmp_path / "mlartifacts" / "m").is_dir() and not (tmp_path / "mlruns").exists()


def test_without_mlflow_the_command_says_which_extra(tmp_path: Path) -> None:
    write_notebook(tmp_path / "n.ipynb", "%%mlops step a\nx = 1")
    subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", "export",
                    str(tmp_path / "n.ipynb")], check=True, capture_output=True)
    # MLflow is installed for the tests, so its absence is simulated in the child process:
    # a None entry in sys.modules makes `import mlflow` fail as it would when not installed.
    code = ("import sys; sys.modules['mlflow'] = None; from jupyter_mlops.cli import main; "
            f"sys.exit(main(['run', {str(tmp_path / 'n_pipeline')!r}, '--mlflow', 'sqlite:///x.db']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == ("jupyter mlops: error: mirroring a run to MLflow needs "
                                   "MLflow, which is not installed; pip install "
                                   "'jupyter-mlops[mlflow]'")
    assert not (tmp_path / "n_pipeline" / "runs").exists()
