"""Which files a step reads: only the strings of the user's own code name them, never those
jupyter-mlops writes around it (an output's role ``"data"`` beside a ``data/`` folder); and
lineage describes each producing step once."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_notebook

from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.run.cache import step_strings
from jupyter_mlops.run.lineage import lineage_text
from jupyter_mlops.runtime._files import sha256_file

CELLS = (
    "%%mlops setup\nimport os\nimport pandas as pd",
    '%%mlops params\nsource = "data/data.csv"  # the input file\nshift = 1',
    "%%mlops step load\nraw = pd.read_csv(source)",
    "%%mlops step clean\ndf = raw.dropna()",
    "%%mlops data df\ndf = df.assign(y=df['x'] * 2 + shift)",
    "%%mlops step split\ntrain = df.iloc[:3]\ntest = df.iloc[3:]",
    "%%mlops data train test\ntrain = train.reset_index(drop=True)",
    "%%mlops step fit\nslope = float((train['y'] / train['x']).mean())",
    "%%mlops step evaluate\n"
    "error = float((test['x'] * slope - test['y']).abs().sum()) + len(train)",
    "%mlops metrics error",
    "%%mlops step listing\nnames = sorted(os.listdir('data'))\nprint(names)",
)
STEPS = {"load", "clean", "split", "fit", "evaluate", "listing"}


def _project(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "data.csv").write_text("x\n1\n2\n3\n4\n5\n")
    return write_notebook(tmp_path / "r.ipynb", *CELLS)


def test_generated_code_names_no_file(tmp_path: Path) -> None:
    folder = export(_project(tmp_path)).folder
    spec = PipelineSpec.read(folder)
    strings = {s.name: step_strings(folder / s.notebook) for s in spec.steps}
    # the user's own strings, the parameter's default among them
    assert "data/data.csv" in strings["load"]
    assert strings["listing"] == ["data"]
    # not our roles, module names, artifact folder or step names
    for name in ("clean", "split", "fit", "evaluate"):
        assert not set(strings[name]) & {"data", "jupyter_mlops", "artifacts", name, "value",
                                         "name", "role", "required"}, (name, strings[name])
    assert strings["clean"] == ["x"] and strings["split"] == []  # df["x"]: the user's


def _run(tmp_path: Path) -> dict[str, Any]:
    done = run_cli("run", str(tmp_path / "r_pipeline"), "--store",
                   str(tmp_path / "store.sqlite"), "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^Run (\S+) succeeded", done.stdout, re.M)
    assert match, done.stdout
    return json.loads((tmp_path / "runs" / match.group(1) / "run.json").read_text())


def _ran(record: dict[str, Any]) -> set[str]:
    assert all(s["status"] == "done" for s in record["steps"]), record["steps"]
    return {s["name"] for s in record["steps"] if s["cached_from"] is None}


def _files(record: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {s["name"]: s["files"] for s in record["steps"]}


@pytest.mark.kernel
def test_a_new_file_in_data_reruns_only_the_steps_that_read_the_folder(tmp_path: Path) -> None:
    notebook = _project(tmp_path)
    assert run_cli("export", str(notebook)).returncode == 0
    first = _run(tmp_path)
    assert _ran(first) == STEPS
    files = _files(first)
    assert files["load"] == {"data/data.csv": sha256_file(tmp_path / "data" / "data.csv")}
    assert set(files["listing"]) == {"data"}
    for step in ("clean", "split", "fit", "evaluate"):
        assert files[step] == {}, (step, files[step])

    # a file copied into data/: only the step that lists the folder runs again
    (tmp_path / "data" / "notes.txt").write_text("new\n")
    second = _run(tmp_path)
    assert _ran(second) == {"listing"}
    # the file load reads changes (its last row): load runs again, and the steps whose
    # inputs changed with it; fit's `train` (the first rows) did not; the listing did
    (tmp_path / "data" / "data.csv").write_text("x\n1\n2\n3\n4\n6\n")
    third = _run(tmp_path)
    assert _ran(third) == {"load", "clean", "split", "evaluate", "listing"}

    # lineage of the metric: each producing step is described once
    shown = run_cli("lineage", f"{third['run_id']}:error", "--store",
                    str(tmp_path / "store.sqlite"))
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for step in ("evaluate", "fit", "split", "clean", "load"):
        described = [line for line in lines if f"made by step `{step}` of run" in line]
        assert len(described) == 1, shown.stdout
    assert sum("read data/data.csv" in line for line in lines) == 1, shown.stdout
    # evaluate reads test and train from split, fit reads train: one line each, not a chain
    assert sum("made by step `split` (described above)" in line for line in lines) == 2, \
        shown.stdout
    assert len(lines) == 10, shown.stdout


def test_lineage_text_describes_a_shared_producer_once() -> None:
    def node(variable: str, step: str, inputs: list[dict[str, Any]],
             files: dict[str, str] | None = None) -> dict[str, Any]:
        return {"variable": variable, "sha256": "f" * 64, "run": "R", "step": step,
                "cached_from": None, "code_sha256": "c" * 64, "parameters": {},
                "files": files or {}, "inputs": inputs}

    load = node("raw", "load", [], {"data.csv": "d" * 64})
    split = [node(v, "split", [load]) for v in ("X_test", "X_train", "y_test", "y_train")]
    model = node("model", "train", split[1::2])
    tree = node("accuracy", "evaluate", [split[0], model, split[2]])
    text = lineage_text(tree)
    assert text.count("of run R") == 4  # evaluate, split, load, train
    assert text.count("read data.csv") == 1
    assert text.splitlines()[-1] == ("  y_test (sha256 ffffffffffff) made by step `split` "
                                     "(described above)")
