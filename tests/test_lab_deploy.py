"""Deploy from the panel, its server side: ``POST /mlops/deploy`` against a real jupyter_server
that requires a token, writing what ``jupyter mlops airflow`` and ``jupyter mlops kfp`` write."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import write_notebook
from test_server import call
from tornado.httpclient import HTTPClientError
from wire import assert_wire

from jupyter_mlops.jobs.api import create_job
from jupyter_mlops.jobs.timing import Schedule
from jupyter_mlops.pipeline.export import export

CELLS = [
    ("scale = 2", ["mlops:params"]),
    ("values = [i * scale for i in range(5)]", ["mlops:step=make"]),
    ("total = sum(values)", ["mlops:step=total"]),
]


@pytest.fixture
def jp_server_config() -> dict[str, Any]:
    """Load our extension, as the jupyter-config file does for an installed package."""
    return {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": True}}}


def exported(root: Path) -> str:
    """``root/work/small.ipynb`` exported; its pipeline folder, relative to ``root``."""
    export(write_notebook(root / "work" / "small.ipynb", *CELLS))
    return "work/small_pipeline"


def _constant(text: str, name: str) -> Any:
    """The value of the DAG file's module-level ``NAME = literal``."""
    for node in ast.parse(text).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in the DAG file")


async def deploy(jp_fetch: Any, pipeline: str, target: str, **options: Any) -> tuple[int, Any]:
    return await call(jp_fetch, "POST", "deploy",
                      body={"pipeline": pipeline, "target": target, "options": options})


async def test_airflow_writes_a_dag_python_compiles(jp_fetch: Any, jp_root_dir: Path) -> None:
    pipeline = exported(jp_root_dir)
    code, data = await deploy(jp_fetch, pipeline, "airflow", output="dags", retries=2,
                              timeout=60)
    assert code == 200, data
    assert_wire(data, "IDeployReply")
    assert data["path"] == "dags/mlops_small.py" and data["files"] == [data["path"]]
    assert data["summary"] == "Wrote dags/mlops_small.py" and data["warning"] is None
    text = (jp_root_dir / data["path"]).read_text()
    compile(text, data["path"], "exec")
    assert "RETRIES = 2" in text
    assert _constant(text, "ARTIFACTS") == str(jp_root_dir / pipeline / "runs" / "airflow")

    # with a job: the job's own DAG on its schedule, said as the CLI says it
    create_job(jp_root_dir / pipeline, Schedule.of(every="1h"), name="nightly")
    code, data = await deploy(jp_fetch, pipeline, "airflow", output="dags", job="nightly")
    assert code == 200, data
    assert data["path"] == "dags/mlops_small__nightly.py"
    assert data["summary"].startswith("Wrote dags/mlops_small__nightly.py (schedule: every")
    compile((jp_root_dir / data["path"]).read_text(), data["path"], "exec")
    code, data = await deploy(jp_fetch, pipeline, "airflow", output="dags", job="weekly")
    assert code == 404 and "weekly" in data["error"] and "\n" not in data["error"], data


async def test_kfp_writes_yaml_that_yaml_reads(jp_fetch: Any, jp_root_dir: Path) -> None:
    pytest.importorskip("kfp")
    pipeline = exported(jp_root_dir)
    code, data = await deploy(jp_fetch, pipeline, "kfp", output="kfp/pipeline.yaml",
                              image="registry.example/small:1")
    assert code == 200, data
    assert_wire(data, "IDeployReply")
    assert data["path"] == "kfp/pipeline.yaml"
    assert {"kfp/Dockerfile", "kfp/requirements.txt"} <= set(data["files"])
    assert data["summary"] == "Wrote kfp/pipeline.yaml"
    assert len(data["lines"]) == len(data["files"])
    compiled = yaml.safe_load((jp_root_dir / "kfp" / "pipeline.yaml").read_text())
    assert "registry.example/small:1" in json.dumps(compiled)


async def test_refusals_are_one_json_line(jp_fetch: Any, jp_root_dir: Path) -> None:
    pipeline = exported(jp_root_dir)
    cases = [
        ("airflow", {"output": "dags", "retries": -1}, 400, "--retries needs a whole number"),
        ("airflow", {"output": "dags", "retries": "two"}, 400, "option `retries` must be"),
        ("airflow", {"output": "dags", "job": "nope"}, 400, "no run store at work/small_pipeline"),
        ("airflow", {"output": "dags", "image": "x"}, 400, "airflow has no option `image`"),
        ("airflow", {}, 400, "missing option `output`"),
        ("kfp", {"output": "kfp/pipeline.json"}, 400, "name it *.yaml"),
        ("dask", {"output": "x"}, 400, "`target` must be airflow or kfp"),
    ]
    for target, options, status, words in cases:
        code, data = await deploy(jp_fetch, pipeline, target, **options)
        assert code == status, (target, options, data)
        assert words in data["error"] and "\n" not in data["error"], data
        assert str(jp_root_dir) not in data["error"]
    (jp_root_dir / "dagfile").write_text("a file")
    code, data = await deploy(jp_fetch, pipeline, "airflow", output="dagfile")
    assert code == 400 and data["error"].startswith("dagfile is a file"), data
    assert not (jp_root_dir / "dags").exists()


@pytest.mark.parametrize(("pipeline", "output"), [
    ("work/small_pipeline", "../outside"), ("work/small_pipeline", "/tmp/dags"),
    ("work/small_pipeline", "link/dags"), ("../work/small_pipeline", "dags")])
async def test_paths_outside_the_root_are_refused(jp_fetch: Any, jp_root_dir: Path,
                                                  pipeline: str, output: str) -> None:
    exported(jp_root_dir)
    (jp_root_dir / "link").symlink_to(jp_root_dir.parent)
    code, data = await deploy(jp_fetch, pipeline, "airflow", output=output)
    assert code == 403, data
    code, data = await deploy(jp_fetch, "work/small_pipeline", "airflow", output="dags",
                              artifacts="../runs")
    assert code == 403, data
    assert not (jp_root_dir.parent / "outside").exists()
    assert not (jp_root_dir.parent / "dags").exists()


async def test_deploy_needs_the_token(jp_fetch: Any, jp_root_dir: Path) -> None:
    pipeline = exported(jp_root_dir)
    body = json.dumps({"pipeline": pipeline, "target": "airflow", "options": {"output": "d"}})
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("mlops", "deploy", method="POST", body=body,
                       headers={"Authorization": ""})
    assert err.value.code == 403
    assert not (jp_root_dir / "d").exists()
