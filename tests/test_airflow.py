"""`jupyter mlops airflow`: the DAG file it writes, and real `airflow dags test` runs of it.

Airflow runs only in its own venv (``MLOPS_AIRFLOW_VENV``, default ``<repo>/.venv-airflow``,
made by ``scripts/airflow-venv`` when missing), always in subprocesses: this process never
imports airflow.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import REPO, write_notebook

from jupyter_mlops.deploy.airflow_dag import write_dag
from jupyter_mlops.errors import MlopsError, SpecError
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.runtime.artifacts import load, read_manifest

VENV = Path(os.environ.get("MLOPS_AIRFLOW_VENV") or REPO / ".venv-airflow")

PARAMS = '%%mlops params\nn = 3\nscale = 0.5\nlabel = "x"\nflag = False\ntags = ["a"]'


def _pipeline(folder: Path, *steps: str) -> Path:
    write_notebook(folder / "p.ipynb", PARAMS, *steps)
    return export(folder / "p.ipynb").folder


def _typed_pipeline(folder: Path) -> Path:
    return _pipeline(
        folder,
        "%%mlops step make\nbase = list(range(n))",
        "%%mlops step scaled\nvalues = [b * scale for b in base]\n"
        "kinds = label + ':' + ','.join(type(v).__name__ for v in (n, scale, flag, tags))\n"
        "kinds += ':' + repr((flag, tags))",
        "%%mlops step report\ntotal = sum(values)\nprint(kinds)",
        "%mlops metrics total",
    )


def _constant(text: str, name: str) -> Any:
    """The value of the DAG file's module-level ``NAME = literal``."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in the DAG file")


# -- the DAG file, without Airflow -----------------------------------------------------------

def test_the_dag_file_bakes_in_the_spec_and_is_clean_python(tmp_path: Path) -> None:
    pipeline = _typed_pipeline(tmp_path)
    path = write_dag(pipeline, tmp_path / "dags", retries=2, timeout=90)
    assert path == tmp_path / "dags" / "mlops_p.py"
    text = path.read_text()
    compile(text, str(path), "exec")
    assert _constant(text, "PIPELINE") == str(pipeline.resolve())
    assert _constant(text, "ARTIFACTS") == str(pipeline.resolve() / "runs" / "airflow")
    scaled = _constant(text, "STEPS")["scaled"]
    assert scaled["notebook"] == "steps/02_scaled.ipynb"
    assert sorted(scaled["parameters"]) == ["flag", "label", "n", "scale", "tags"]
    assert scaled["inputs"] == {"base": "make"}
    assert "dag_id='mlops_p'" in text and "render_template_as_native_obj=True" in text
    for schema in ("integer", "number", "string", "boolean", "array"):
        assert f"type={schema!r}" in text, schema
    assert "engine_name=_engine()" in text and "RETRIES = 2" in text and "TIMEOUT = 90" in text
    assert "tasks['make'] >> tasks['scaled']" in text
    assert "pipeline.yaml" not in text.replace("as pipeline.yaml gives it", "")
    if importlib.util.find_spec("ruff") is not None:  # a test dependency
        lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                               "--config", str(REPO / "pyproject.toml"), str(path)],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_an_artifacts_location_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    pipeline = _typed_pipeline(tmp_path)
    monkeypatch.chdir(tmp_path)
    text = write_dag(pipeline, "dags", artifacts="shared/runs").read_text()
    assert _constant(text, "ARTIFACTS") == str(tmp_path / "shared" / "runs")
    text = write_dag(pipeline, "dags", artifacts="s3://bucket/runs").read_text()
    assert _constant(text, "ARTIFACTS") == "s3://bucket/runs"
    text = write_dag(pipeline, "dags", artifacts="simplecache::s3://bucket/runs").read_text()
    assert _constant(text, "ARTIFACTS") == "simplecache::s3://bucket/runs"


def test_an_unknown_url_protocol_is_a_one_line_error(tmp_path: Path) -> None:
    pipeline = _typed_pipeline(tmp_path)
    with pytest.raises(MlopsError, match="fsspec knows no protocol `nope`") as err:
        write_dag(pipeline, tmp_path / "dags", artifacts="nope://bucket/runs")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "dags").exists()


def test_bad_folders_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not a pipeline folder"):
        write_dag(tmp_path, tmp_path / "dags")
    pipeline = _typed_pipeline(tmp_path)
    (tmp_path / "afile").write_text("")
    with pytest.raises(MlopsError, match="is a file") as err:
        write_dag(pipeline, tmp_path / "afile")
    assert "\n" not in str(err.value)
    with pytest.raises(MlopsError, match="--timeout"):
        write_dag(pipeline, tmp_path / "dags", timeout=0)


# -- real Airflow runs ---------------------------------------------------------------------

Airflow = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    """Runs ``airflow ARGS`` from the venv with a fresh SQLite home; the venv is made if
    missing (3-4 minutes the first time), and gets this jupyter-mlops' kernel runtime, not
    the whole tool, as a production Airflow environment would."""
    subprocess.run(["bash", str(REPO / "scripts" / "airflow-venv"), str(VENV)],
                   check=True, timeout=900, stdin=subprocess.DEVNULL,
                   env={**os.environ, "MLOPS_PYTHON": sys.executable})
    home = tmp_path_factory.mktemp("airflow-home")
    base = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    for name in ("PYTHONPATH", "VIRTUAL_ENV"):  # Airflow's venv, not ours
        base.pop(name, None)

    def run(*args: str, dags: Path | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess:
        env = dict(base, AIRFLOW__CORE__DAGS_FOLDER=str(dags or home / "dags"))
        return subprocess.run([str(VENV / "bin" / "airflow"), *args], env=env, cwd=home,
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    migrated = run("db", "migrate")
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return run


def test_the_airflow_environment_has_the_runtime_not_the_tool(airflow: Airflow) -> None:
    """What the DAGs below run on: the kernel runtime and papermill, no authoring tool."""
    python = str(VENV / "bin" / "python")
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True,
                            capture_output=True, text=True, env={**os.environ,
                                                                 "PIP_NO_INPUT": "1"})
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "jupyter-mlops-runtime" in names and "papermill" in names
    assert not names & {"jupyter-mlops", "jupyter-server", "ipywidgets", "tornado-websocket"}
    kernel = json.loads((VENV / "share" / "jupyter" / "kernels" / "python3" / "kernel.json")
                        .read_text())
    assert kernel["argv"][0] == python
    assert kernel["metadata"]["jupyter_mlops"]["frames"] in ("arrow", "json-table")


def _run_folder(pipeline: Path) -> Path:
    (folder,) = (pipeline / "runs" / "airflow").iterdir()
    return folder


@pytest.mark.kernel
def test_a_dag_run_passes_typed_params_to_the_steps(tmp_path: Path, airflow: Airflow) -> None:
    pipeline = _typed_pipeline(tmp_path)
    dags = tmp_path / "dags"
    write_dag(pipeline, dags, timeout=300)
    started = time.monotonic()
    conf = {"n": 4, "scale": 2, "flag": True, "tags": ["p", "q"]}  # a JSON 2 for a float
    done = airflow("dags", "test", "mlops_p", "-c", json.dumps(conf), dags=dags)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert time.monotonic() - started < 150
    run = _run_folder(pipeline)
    assert ":" not in run.name and "+" not in run.name  # the run id, made safe for a path
    # the types survive Airflow; `label` is its default, which -c left out
    assert load("kinds", run / "scaled") == "x:int,float,bool,list:(True, ['p', 'q'])"
    assert load("values", run / "scaled") == [0.0, 2.0, 4.0, 6.0]
    assert load("total", run / "report") == 12.0
    executed = nbformat.read(str(run / "report" / "03_report.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and str(pipeline.resolve()) in injected[0].source  # checks are on
    # the hashes of its inputs came from the producing task's XCom, and were checked
    scaled = nbformat.read(str(run / "scaled" / "02_scaled.ipynb"), as_version=4)
    sha = read_manifest("base", run / "make")["sha256"]
    assert f'mlops_input_hashes = {{"base": "{sha}"}}' in _injected(scaled)


def _injected(notebook: Any) -> str:
    (cell,) = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    return cell.source


@pytest.mark.kernel
def test_artifacts_at_a_file_url(tmp_path: Path, airflow: Airflow) -> None:
    """The shared location is an fsspec URL: each task copies its inputs down from it and its
    step folder up to it; nothing is written to the pipeline or the working directory."""
    pipeline = _typed_pipeline(tmp_path / "project")
    shared = tmp_path / "shared"
    url = shared.as_uri()
    dags = tmp_path / "dags"
    assert _constant(write_dag(pipeline, dags, artifacts=url).read_text(), "ARTIFACTS") == url
    done = airflow("dags", "test", "mlops_p", "-c", json.dumps({"n": 5, "label": "u"}),
                   dags=dags)
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    (run,) = shared.iterdir()
    run_url = f"{url}/{run.name}"
    assert load("kinds", f"{run_url}/scaled") == "u:int,float,bool,list:(False, ['a'])"
    assert load("total", f"{run_url}/report") == 5.0
    assert (run / "report" / "03_report.ipynb").is_file()
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*"))
    # every file at the URL came from the tasks, and the kernels saw only local folders
    assert {p.name for p in tmp_path.joinpath("project").iterdir()} == {"p.ipynb", "p_pipeline"}
    assert not (pipeline / "runs").exists()
    report = nbformat.read(str(run / "report" / "03_report.ipynb"), as_version=4)
    assert url not in _injected(report) and "mlops-run-" in _injected(report)


@pytest.mark.kernel
def test_a_failing_step_fails_the_dag_run(tmp_path: Path, airflow: Airflow) -> None:
    pipeline = _pipeline(
        tmp_path,
        "%%mlops step make\nbase = list(range(n))",
        "%%mlops step broken\nvalues = [b / 0 for b in base]",
        "%%mlops step report\ntotal = sum(values)",
    )
    dags = tmp_path / "dags"
    write_dag(pipeline, dags)
    done = airflow("dags", "test", "mlops_p", dags=dags)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-5000:]
    assert "ZeroDivisionError" in log
    run = _run_folder(pipeline)
    assert load("base", run / "make") == [0, 1, 2]
    failed = nbformat.read(str(run / "broken" / "02_broken.ipynb"), as_version=4)
    assert any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in failed.cells)
    assert not (run / "report").exists()  # the downstream task never ran


# -- the contract: data checks and metric thresholds --------------------------------------

CONTRACT = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport pandas as pd\nfrom sklearn.linear_model import LogisticRegression",
    "%%mlops params\nC = 1.0\ndata_path = 'data.csv'",
    "%%mlops step load\nraw = pd.read_csv(data_path)",
    "%%mlops data df\ndf = raw.dropna()",
    "%%mlops step train\nmodel = LogisticRegression(C=C).fit(df[['a', 'b']], df['label'])",
    "%%mlops metrics accuracy\naccuracy = float(model.score(df[['a', 'b']], df['label']))",
)


@pytest.fixture(scope="module")
def contract(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A notebook that reads data.csv beside it, run once to capture its contract (data
    profile, accuracy threshold), then exported."""
    import numpy as np
    import pandas as pd

    root = tmp_path_factory.mktemp("contract")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(size=300)
    label = (a + 0.5 * b + rng.normal(0, 0.3, 300) > 0).astype(int)
    pd.DataFrame({"a": a, "b": b, "label": label}).to_csv(root / "data.csv", index=False)
    notebook = write_notebook(root / "model.ipynb", *CONTRACT)
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(root / "ran.ipynb"),
                    "--cwd", str(root), "--no-progress-bar"], check=True, capture_output=True,
                   env=dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook)))
    folder = export(notebook).folder
    assert set(PipelineSpec.read(folder).checks["metrics"]) == {"accuracy"}
    return folder


@pytest.mark.kernel
def test_a_metric_under_its_threshold_fails_the_task(tmp_path: Path, airflow: Airflow,
                                                      contract: Path) -> None:
    shared = tmp_path / "shared"
    dags = tmp_path / "dags"
    write_dag(contract, dags, artifacts=shared.as_uri())
    done = airflow("dags", "test", "mlops_model", "-c", json.dumps({"C": 0.00001}), dags=dags)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-5000:]
    assert "ContractError" in log and "metric `accuracy` is" in log
    assert "under its threshold" in log
    (run,) = shared.iterdir()
    # the data the notebook read passed its checks; the metric did not; both recorded
    passed = json.loads((run / "load" / "checks.json").read_text())
    assert {c["check"]: c["ok"] for c in passed} == {"schema": True, "drift": True}
    (metric,) = json.loads((run / "train" / "checks.json").read_text())
    assert metric["name"] == "accuracy" and not metric["ok"] and metric["value"] < metric["min"]
    assert (run / "train" / "02_train.ipynb").is_file()  # the failed notebook, to read
    assert not (run / "train" / "model.json").exists()  # a failed step outputs nothing


@pytest.mark.kernel
def test_data_that_breaks_its_schema_fails_the_task(tmp_path: Path, airflow: Airflow,
                                                     contract: Path) -> None:
    import pandas as pd

    pd.DataFrame({"a": [1.0, 2.0], "label": [0, 1]}).to_csv(tmp_path / "thin.csv", index=False)
    dags = tmp_path / "dags"
    write_dag(contract, dags, artifacts=str(tmp_path / "runs"))
    done = airflow("dags", "test", "mlops_model", "-c",
                   json.dumps({"data_path": str(tmp_path / "thin.csv")}), dags=dags)
    log = done.stdout + done.stderr
    assert done.returncode == 1, log[-5000:]
    assert "column `b` is missing" in log
    (run,) = (tmp_path / "runs").iterdir()
    (schema,) = json.loads((run / "load" / "checks.json").read_text())
    assert schema["check"] == "schema" and not schema["ok"]
    assert not (run / "train").exists()  # the task after it never ran
