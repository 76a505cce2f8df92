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

from jupyter_mlops.airflow_dag import write_dag
from jupyter_mlops.artifacts import load
from jupyter_mlops.errors import MlopsError, SpecError
from jupyter_mlops.export import export

VENV = Path(os.environ.get("MLOPS_AIRFLOW_VENV") or REPO / ".venv-airflow")

PARAMS = '%%mlops params\nn = 3\nscale = 0.5\nlabel = "x"'


def _pipeline(folder: Path, *steps: str) -> Path:
    write_notebook(folder / "p.ipynb", PARAMS, *steps)
    return export(folder / "p.ipynb").folder


def _typed_pipeline(folder: Path) -> Path:
    return _pipeline(
        folder,
        "%%mlops step make\nbase = list(range(n))",
        "%%mlops step scaled\nvalues = [b * scale for b in base]\n"
        "kinds = label + ':' + type(n).__name__ + ',' + type(scale).__name__",
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
    assert sorted(scaled["parameters"]) == ["label", "n", "scale"]
    assert "dag_id='mlops_p'" in text and "render_template_as_native_obj=True" in text
    assert "type='integer'" in text and "type='number'" in text and "type='string'" in text
    assert 'engine_name="mlops"' in text and "RETRIES = 2" in text and "TIMEOUT = 90" in text
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
    missing (3-4 minutes the first time)."""
    if not (VENV / "bin" / "airflow").exists():
        subprocess.run(["bash", str(REPO / "scripts" / "airflow-venv"), str(VENV)],
                       check=True, timeout=900, stdin=subprocess.DEVNULL)
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


def _run_folder(pipeline: Path) -> Path:
    (folder,) = (pipeline / "runs" / "airflow").iterdir()
    return folder


@pytest.mark.kernel
def test_a_dag_run_passes_typed_params_to_the_steps(tmp_path: Path, airflow: Airflow) -> None:
    pipeline = _typed_pipeline(tmp_path)
    dags = tmp_path / "dags"
    write_dag(pipeline, dags, timeout=300)
    started = time.monotonic()
    done = airflow("dags", "test", "mlops_p", "-c", json.dumps({"n": 4, "scale": 2.0}),
                   dags=dags)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert time.monotonic() - started < 150
    run = _run_folder(pipeline)
    assert ":" not in run.name and "+" not in run.name  # the run id, made safe for a path
    # the types survive Airflow; `label` is its default, which -c left out
    assert load("kinds", run / "scaled") == "x:int,float"
    assert load("values", run / "scaled") == [0.0, 2.0, 4.0, 6.0]
    assert load("total", run / "report") == 12.0
    executed = nbformat.read(str(run / "report" / "03_report.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and str(pipeline.resolve()) in injected[0].source  # checks are on


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
