"""The %%mlops magics in a real kernel (through papermill): run as unmarked, then capture."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import write_notebook

from jupyter_mlops.runtime.artifacts import load

pytestmark = pytest.mark.kernel

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops params\nC = 0.5  # inverse regularisation\nseed = 0",
    "%%mlops step train\nfrom sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)",
    "%%mlops model clf\nimport numpy as np\nfrom sklearn.pipeline import make_pipeline\n"
    "from sklearn.impute import SimpleImputer\n"
    "clf = make_pipeline(SimpleImputer(missing_values=np.nan), LogisticRegression(C=C, "
    "max_iter=500)).fit(X, y)\nclf.score(X, y)",
    "%%mlops metrics accuracy log_loss_value --min accuracy=0.9\n"
    "from sklearn.metrics import log_loss\naccuracy = float(clf.score(X, y))\n"
    "log_loss_value = float(log_loss(y, clf.predict_proba(X)))",
    "%mlops metrics missing_metric",
    "%%mlops stpe train\nz = 1",
    "print('after', accuracy)",
)


def _execute(notebook: Path, out: Path) -> nbformat.NotebookNode:
    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook))
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(out), "--cwd",
                    str(notebook.parent), "--no-progress-bar"], check=True, capture_output=True,
                   env=env)
    return nbformat.read(str(out), as_version=4)


def _text(cell: nbformat.NotebookNode, name: str = "stdout") -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == name)


def test_marked_cells_run_as_unmarked_and_capture(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "iris.ipynb", *CELLS)
    executed = _execute(notebook, tmp_path / "out.ipynb")
    cells = executed.cells
    # the model cell's last expression is displayed as it would be without the magic
    results = [o for o in cells[3].outputs if o.output_type == "execute_result"]
    assert float(results[0].data["text/plain"]) > 0.9
    assert "recorded model `clf` (Pipeline)" in _text(cells[3])
    # bad metrics and an unknown role: one line each, no traceback, and the kernel goes on
    assert _text(cells[5], "stderr") == ("jupyter-mlops: metric `missing_metric` does not "
                                         "exist after this cell ran; check the spelling or "
                                         "assign it in the cell\n")
    assert "unknown role `stpe`" in _text(cells[6], "stderr")
    assert not any(o.output_type == "error" for c in cells for o in c.get("outputs", []))
    assert _text(cells[7]).startswith("after 0.9")

    record = json.loads((tmp_path / "iris.mlops.json").read_text())
    assert record["params"] == {
        "C": {"value": 0.5, "type": "float", "help": "inverse regularisation"},
        "seed": {"value": 0, "type": "int", "help": ""}}
    metrics = record["metrics"]
    assert metrics["accuracy"]["min"] == 0.9 and metrics["accuracy"]["direction"] == "higher"
    loss = metrics["log_loss_value"]
    assert loss["direction"] == "lower"
    assert loss["max"] == pytest.approx(loss["value"] * 1.05)
    model = record["models"]["clf"]
    assert model["class"] == "sklearn.pipeline.Pipeline"
    assert model["params"]["logisticregression__C"] == 0.5 and model["fitted"] is True
    assert model["params"]["simpleimputer__missing_values"] == "nan"  # strict JSON
    assert model["features_in"][0] == "sepal length (cm)" and model["classes"] == [0, 1, 2]
    clf = load("clf", tmp_path / "iris.mlops", sha256=model["sha256"])
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True, as_frame=True)
    assert float(clf.score(X, y)) == metrics["accuracy"]["value"]


def test_a_failing_marked_cell_fails_as_it_would_unmarked(tmp_path: Path) -> None:
    """Its traceback quotes the cell's own line, not jupyter-mlops' frames (it said "Could
    not get source"), and a ``;`` at the end of a marked cell hides its value, as unmarked."""
    notebook = write_notebook(tmp_path / "fail.ipynb", "%load_ext jupyter_mlops",
                              "%%mlops skip\nsorted([3, 1, 2]);",
                              "%%mlops skip\nsorted([3, 1, 2])  # shown",
                              "%%mlops step a\nx = 1\nraise ValueError('boom')", "print('never')")
    proc = subprocess.run([sys.executable, "-m", "papermill", str(notebook),
                           str(tmp_path / "out.ipynb"), "--no-progress-bar"],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    errors = [o for c in executed.cells for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert [(e.ename, e.evalue) for e in errors] == [("ValueError", "boom")]
    shown = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0].traceback))
    assert "----> 2 raise ValueError('boom')" in shown and "Could not get source" not in shown
    assert "magics.py" not in shown
    results = {c.source: [o.data["text/plain"] for o in c.outputs
                          if o.output_type == "execute_result"]
               for c in executed.cells if c.source.startswith("%%mlops skip")}
    assert list(results.values()) == [[], ["[1, 2, 3]"]]


def test_line_form_marks_a_cell_and_captures_without_running(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "line.ipynb", "%load_ext jupyter_mlops",
                              "%%mlops step a\nscore = 0.75", "%mlops metrics score")
    _execute(notebook, tmp_path / "out.ipynb")
    record = json.loads((tmp_path / "line.mlops.json").read_text())
    assert record["metrics"]["score"] == {"value": 0.75, "direction": "higher",
                                          "min": pytest.approx(0.7125)}
    from jupyter_mlops.pipeline.export import plan

    _, spec = plan(notebook)
    assert [(o.name, o.role) for o in spec.steps[0].outputs] == [("score", "metrics")]


def test_export_names_hidden_state_the_record_saw(tmp_path: Path) -> None:
    ran = write_notebook(tmp_path / "h.ipynb", "%load_ext jupyter_mlops", "helper = 41",
                         "%%mlops step a\nanswer = helper + 1", "%mlops metrics answer")
    _execute(ran, tmp_path / "out.ipynb")
    # the cell that made `helper` is deleted afterwards; the record remembers the kernel had it
    write_notebook(tmp_path / "h.ipynb", "%load_ext jupyter_mlops",
                   "%%mlops step a\nanswer = helper + 1", "%mlops metrics answer")
    from jupyter_mlops.pipeline.export import plan

    analysis, _ = plan(tmp_path / "h.ipynb")
    (problem,) = [p for p in analysis.problems if p.severity == "error"]
    assert problem.message == (
        "h.ipynb, cell 2 uses `helper`, which no earlier step or setup cell defines; define it "
        "in an earlier cell or mark the cell that defines it (the kernel held `helper` when "
        "the cells were captured: it came from a cell since deleted or edited, or from outside "
        "this notebook)")


def test_capture_cell_gives_a_tag_marked_cell_the_magics_capture(tmp_path: Path) -> None:
    """What the sidebar sends behind a tag-marked cell, in a real kernel: the same record as
    the magic, and bad tags as one line."""
    notebook = write_notebook(
        tmp_path / "tags.ipynb",
        "%load_ext jupyter_mlops",
        ("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})", ["mlops:data=df"]),
        "from jupyter_mlops.ipython.magics import capture_cell\n"
        "capture_cell(['mlops:data=df'], \"df = pd.DataFrame({'a': [1, 2, 3]})\")",
        ("accuracy = 0.93", ["mlops:metrics=accuracy"]),
        "capture_cell(['mlops:metrics=accuracy'], 'accuracy = 0.93')",
        "capture_cell(['mlops:nonsense'], 'x = 1')")
    cells = _execute(notebook, tmp_path / "out.ipynb").cells
    assert "jupyter-mlops: recorded" in _text(cells[2]) and "df" in _text(cells[2])
    assert "recorded accuracy = 0.93" in _text(cells[4])
    assert _text(cells[5], "stderr").startswith("jupyter-mlops: unknown role `nonsense`")
    record = json.loads((tmp_path / "tags.mlops.json").read_text())
    assert [e["variable"] for e in record["data"].values()] == ["df"]
    assert record["metrics"]["accuracy"]["value"] == 0.93
