"""Without an engine's extra, its command says in one line which extra to install.

The extras are installed here, so a missing one is made real for one subprocess: a
``sitecustomize`` on its PYTHONPATH puts a finder first on ``sys.meta_path`` that answers
every import of the blocked package with ModuleNotFoundError, as Python does when a package
is not installed. Airflow is really absent from this venv, so that case needs no blocking.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, write_notebook

from jupyter_mlops.deploy.airflow_dag import write_dag
from jupyter_mlops.pipeline.export import export

BLOCKER = '''\
import sys

BLOCKED = {blocked!r}


class _NotInstalled:
    """Answers imports of the blocked packages as if they were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
'''


def _without(tmp_path: Path, *packages: str) -> dict[str, str]:
    """The environment of a Python process in which ``packages`` cannot be imported."""
    site = tmp_path / "blocked-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=set(packages)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    env.pop("PYTHONSTARTUP", None)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def _pipeline(tmp_path: Path) -> Path:
    write_notebook(tmp_path / "e.ipynb", "%%mlops params\nn = 2", "%%mlops step a\nx = n",
                   "%%mlops step b\ny = x + 1")
    return export(tmp_path / "e.ipynb").folder


def test_the_blocker_makes_a_package_missing(tmp_path: Path) -> None:
    env = _without(tmp_path, "kfp")
    done = _run([sys.executable, "-c", "import kfp"], env, tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "ModuleNotFoundError: No module named 'kfp'"
    assert _run([sys.executable, "-c", "import kfp"], dict(os.environ), tmp_path).returncode == 0


def test_kfp_without_its_extra(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    done = _run([sys.executable, "-m", "jupyter_mlops.cli", "kfp", str(pipeline), "-o",
                 str(tmp_path / "out" / "pipeline.yaml")], _without(tmp_path, "kfp"), tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()  # one line, and it names the extra
    assert line.endswith(
        "error: `jupyter mlops kfp` needs the kfp SDK; pip install 'jupyter-mlops[kfp]'")
    assert not (tmp_path / "out").exists()


def test_dask_without_its_extra(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path)
    done = _run([sys.executable, "-m", "jupyter_mlops.cli", "run", str(pipeline),
                 "--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"],
                _without(tmp_path, "distributed", "dask"), tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.endswith(
        "error: the Dask executor needs Dask distributed, which is not installed; pip install "
        "'jupyter-mlops[dask]'")


def test_a_dag_file_where_airflow_is_missing(tmp_path: Path) -> None:
    # `jupyter mlops airflow` only writes a file, so it needs no Airflow; the DAG file does
    assert importlib.util.find_spec("airflow") is None, "this venv should not have Airflow"
    path = write_dag(_pipeline(tmp_path), tmp_path / "dags")
    done = _run([sys.executable, str(path)], dict(os.environ), tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: this DAG file needs Apache Airflow; pip install 'jupyter-mlops[airflow]'")


def test_a_dag_file_where_airflow_lacks_jupyter_mlops(tmp_path: Path) -> None:
    venv = Path(os.environ.get("MLOPS_AIRFLOW_VENV") or REPO / ".venv-airflow")
    if not (venv / "bin" / "airflow").exists():
        pytest.skip("no Airflow venv; tests/test_airflow.py makes it")
    path = write_dag(_pipeline(tmp_path), tmp_path / "dags")
    env = _without(tmp_path, "jupyter_mlops")
    env["AIRFLOW_HOME"] = str(tmp_path / "airflow-home")
    done = _run([str(venv / "bin" / "python"), str(path)], env, tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: this DAG needs the jupyter-mlops runtime where Airflow runs: run "
        "`jupyter mlops kernel AIRFLOW_PYTHON --name KERNEL` (KERNEL below) and "
        "`pip install papermill` there")
