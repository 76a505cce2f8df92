"""The runner with real kernels and real papermill: order, parallelism, parameters, files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import write_notebook

from jupyter_mlops.errors import ParameterError
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.run.runner import run_pipeline
from jupyter_mlops.runtime.artifacts import load

pytestmark = pytest.mark.kernel


def _papermill(source: Path, output: Path, *args: str) -> None:
    """papermill's own command line, as a user runs it."""
    subprocess.run([sys.executable, "-m", "papermill", str(source), str(output), *args,
                    "--no-progress-bar"], check=True, capture_output=True)


def _run_json(run_folder: Path) -> dict:
    return json.loads((run_folder / "run.json").read_text())


def test_branches_run_in_parallel_with_typed_parameters(tmp_path: Path, cli) -> None:
    nb = write_notebook(
        tmp_path / "branches.ipynb",
        "%%mlops setup\nimport time\nimport numpy as np",
        "%%mlops params\nn: int = 3  # size\nfactor = 2.0",
        "%%mlops step make\nbase = np.arange(n)",
        "%%mlops step left\ntime.sleep(2)\nleft = (base * factor).tolist()",
        "%%mlops step right\ntime.sleep(2)\nright = float(base.sum())",
        "%%mlops step join\nresult = {'left': left, 'right': right}",
        "%%mlops metrics\ntotal = sum(left) + right",
    )
    assert cli("export", str(nb)).returncode == 0
    done = cli("run", str(tmp_path / "branches_pipeline"), "-p", "n=4", "-p", "factor=0.5",
               "-j", "2", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "total = 9" in done.stdout
    (run_folder,) = (tmp_path / "runs").iterdir()
    record = _run_json(run_folder)
    assert record["status"] == "succeeded"
    assert record["parameters"] == {"n": 4, "factor": 0.5}
    steps = {s["name"]: s for s in record["steps"]}
    # left and right only need `make`: with -j 2 they overlap in time
    assert steps["right"]["started"] < steps["left"]["ended"]
    assert steps["left"]["started"] < steps["right"]["ended"]
    assert steps["join"]["started"] >= max(steps["left"]["ended"], steps["right"]["ended"])
    artifacts = run_folder / "artifacts"
    assert load("left", artifacts / "left") == [0.0, 0.5, 1.0, 1.5]
    # `result` is neither declared nor needed later, so it is not saved
    assert not (artifacts / "join" / "result.json").exists()
    assert steps["join"]["outputs"]["total"]["value"] == 9.0
    for name in ("01_make", "02_left", "03_right", "04_join"):
        executed = nbformat.read(str(run_folder / "steps" / f"{name}.ipynb"), as_version=4)
        assert executed.metadata.papermill["parameters"]["mlops_artifacts"] == str(artifacts)


def test_parameters_are_checked_before_anything_runs(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "p.ipynb", "%%mlops params\nn = 3", "%%mlops step a\nm = n")
    export(nb)
    spec = PipelineSpec.read(tmp_path / "p_pipeline")
    with pytest.raises(ParameterError, match="parameter `n` is int"):
        spec.parse_parameters(["n=three"])
    with pytest.raises(ParameterError, match="its parameters are: n"):
        run_pipeline(tmp_path / "p_pipeline", {"m": 1})
    assert not (tmp_path / "p_pipeline" / "runs").exists()


def test_unmarked_notebook_runs_like_papermill(tmp_path: Path, cli) -> None:
    cells = (
        ("rows = 5\nlabel = 'demo'", ["parameters"]),
        "import statistics\nvalues = [i * i for i in range(rows)]",
        "print(label, statistics.mean(values))",
        "values.append(100)\nprint(len(values), max(values))",
    )
    nb = write_notebook(tmp_path / "plain.ipynb", *cells)
    assert cli("export", str(nb)).returncode == 0
    spec = PipelineSpec.read(tmp_path / "plain_pipeline")
    assert [s.name for s in spec.steps] == ["main"]
    assert [p.name for p in spec.parameters] == ["rows", "label"]
    done = cli("run", str(tmp_path / "plain_pipeline"), "-p", "rows=7",
               "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    ours = nbformat.read(str(next((tmp_path / "runs").glob("*/steps/01_main.ipynb"))), 4)
    _papermill(nb, tmp_path / "pm.ipynb", "-p", "rows", "7")
    theirs = nbformat.read(str(tmp_path / "pm.ipynb"), as_version=4)

    def printed(nb: nbformat.NotebookNode) -> list[str]:
        return ["".join(o.get("text", "") for o in c.outputs) for c in nb.cells
                if c.cell_type == "code" and c.outputs]

    assert printed(ours) == printed(theirs) == ["demo 13\n", "8 100\n"]


def test_helper_module_and_data_file_beside_the_notebook(tmp_path: Path, cli) -> None:
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    nb = write_notebook(
        tmp_path / "beside.ipynb",
        "import pandas as pd\nfrom helpers import double",
        "%%mlops step load\ndf = pd.read_csv('data.csv')",
        "%%mlops step use\ndf['c'] = double(df['a'])",
        "%%mlops data df",
    )
    assert cli("export", str(nb)).returncode == 0
    done = cli("run", str(tmp_path / "beside_pipeline"), "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stderr
    (run_folder,) = (tmp_path / "runs").iterdir()
    frame = load("df", run_folder / "artifacts" / "use")
    assert frame["c"].tolist() == [2, 6]


def test_a_step_notebook_runs_with_plain_papermill(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "s.ipynb", "%%mlops params\nk = 2",
                        "%%mlops step a\nimport numpy as np\narr = np.ones(3) * k",
                        "%%mlops step b\ns = float(arr.sum())", "%mlops metrics s")
    export(nb)
    result = run_pipeline(tmp_path / "s_pipeline", {"k": 5}, runs_dir=tmp_path / "runs")
    assert result.status == "succeeded"
    artifacts = result.folder / "artifacts"
    # step b again, by hand, with papermill alone, on the artifacts of that run
    _papermill(tmp_path / "s_pipeline" / "steps" / "02_b.ipynb", tmp_path / "b.ipynb",
               "-p", "mlops_artifacts", str(artifacts), "--cwd", str(tmp_path))
    assert load("s", artifacts / "b") == 15.0


def test_relative_paths_as_a_newcomer_types_them(tmp_path: Path, cli) -> None:
    (tmp_path / "project").mkdir()
    write_notebook(tmp_path / "project" / "rel.ipynb",
                   "%%mlops step a\nvalues = [1, 2, 3]", "%%mlops step b\ntotal = sum(values)",
                   "%mlops metrics total")
    assert cli("export", "project/rel.ipynb", cwd=tmp_path).returncode == 0
    done = cli("run", "project/rel_pipeline", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "total = 6" in done.stdout
    (run_folder,) = (tmp_path / "project" / "rel_pipeline" / "runs").iterdir()
    assert load("values", run_folder / "artifacts" / "a") == [1, 2, 3]
    # nothing was written relative to the kernel's working directory by mistake
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["rel.ipynb",
                                                                        "rel_pipeline"]
