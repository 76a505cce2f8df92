"""Export: the pipeline folder, its step notebooks, re-export, and the nbconvert exporter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill
import pytest
import yaml
from conftest import write_notebook

from jupyter_mlops.errors import AnalysisError, OptionError
from jupyter_mlops.pipeline.export import export
from jupyter_mlops.pipeline.spec import PipelineSpec

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport math",
    "%%mlops params\nn: int = 4  # rows to make\nscale = 1.5  # factor\nlabel = 'x'",
    ("md", "## Make the data"),
    "%%mlops step make\nvalues = [i * scale for i in range(n)]",
    "%%mlops step total\ntotal = math.fsum(values)",
    "%mlops metrics total",
)


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "demo.ipynb", *CELLS)


def test_folder_layout_and_spec(notebook: Path) -> None:
    result = export(notebook)
    folder = notebook.parent / "demo_pipeline"
    assert result.folder == folder
    assert sorted(p.name for p in (folder / "steps").iterdir()) == ["01_make.ipynb",
                                                                    "02_total.ipynb"]
    assert (folder / "README.md").read_text().startswith("# Pipeline `demo`")
    spec = PipelineSpec.read(folder)
    assert spec == result.spec
    assert spec.source == "../demo.ipynb" and spec.workdir == ".."
    assert [(p.name, p.type, p.default, p.help) for p in spec.parameters] == [
        ("n", "int", 4, "rows to make"), ("scale", "float", 1.5, "factor"),
        ("label", "str", "x", "")]
    make, total = spec.steps
    assert make.parameters == ["n", "scale"] and make.outputs[0].name == "values"
    assert total.inputs == {"values": "make"} and total.after == ["make"]
    assert [(o.name, o.role) for o in total.outputs] == [("total", "metrics")]
    raw = yaml.safe_load((folder / "pipeline.yaml").read_text())
    assert raw["edges"] == [["make", "total"]]


def test_step_notebooks_are_valid_papermill_notebooks(notebook: Path) -> None:
    export(notebook)
    path = notebook.parent / "demo_pipeline" / "steps" / "01_make.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec["name"] == "python3"
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "parameters" in code[0].metadata.tags
    assert "%%mlops" not in "".join(c.source for c in code)
    # the source cell of each step cell is recorded, for messages that point back to it
    assert code[-2].metadata["mlops"]["source_cell"] == 5
    params = papermill.inspect_notebook(str(path))
    assert params["n"]["inferred_type_name"] == "int"
    assert params["n"]["default"] == "4" and params["n"]["help"] == "rows to make"
    assert params["scale"]["inferred_type_name"] == "float"
    assert "label" not in params  # the step does not use it
    assert "mlops_artifacts" in params


def test_export_is_deterministic(notebook: Path, tmp_path: Path) -> None:
    export(notebook, tmp_path / "a")
    export(notebook, tmp_path / "b")
    for name in ("pipeline.yaml", "steps/01_make.ipynb", "steps/02_total.ipynb"):
        a = (tmp_path / "a" / name).read_text()
        b = (tmp_path / "b" / name).read_text()
        assert a.replace("../demo.ipynb", "") == b.replace("../demo.ipynb", "")


def test_reexport_keeps_runs_and_drops_stale_steps(notebook: Path) -> None:
    export(notebook)
    folder = notebook.parent / "demo_pipeline"
    (folder / "runs" / "r1").mkdir(parents=True)
    (folder / "runs" / "r1" / "run.json").write_text("{}")
    (folder / "steps" / "notes.txt").write_text("mine")
    renamed = "%%mlops step build\nvalues = [i * scale for i in range(n)]"
    write_notebook(notebook, *CELLS[:4], renamed, *CELLS[5:])
    export(notebook)
    assert (folder / "runs" / "r1" / "run.json").read_text() == "{}"
    assert sorted(p.name for p in (folder / "steps").iterdir()) == [
        "01_build.ipynb", "02_total.ipynb", "notes.txt"]


def test_reexport_keeps_a_hand_written_retrain_policy(notebook: Path) -> None:
    export(notebook)
    spec_file = notebook.parent / "demo_pipeline" / "pipeline.yaml"
    before = yaml.safe_load(spec_file.read_text())["source_sha256"]
    policy = {"drift_share": 0.3, "metrics": {"score": {"min": 0.5}}}
    spec_file.write_text(spec_file.read_text() + yaml.safe_dump({"retrain": policy}))
    write_notebook(notebook, *CELLS[:4], CELLS[4] + "  # edited", *CELLS[5:])
    export(notebook)
    data = yaml.safe_load(spec_file.read_text())
    assert data["retrain"] == policy
    assert data["source_sha256"] != before  # the rest is the new export's
    PipelineSpec.read(spec_file.parent)  # and still a valid spec


def test_export_refuses_a_folder_that_is_not_a_pipeline(notebook: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(OptionError, match="not a jupyter-mlops pipeline") as info:
        export(notebook, target)
    assert info.value.option == "output"
    assert [p.name for p in target.iterdir()] == ["thesis.tex"]


def test_problems_stop_the_export_and_write_nothing(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", "%%mlops step a\ny = x + 1")
    with pytest.raises(AnalysisError, match=r"bad.ipynb, cell 1 uses `x`"):
        export(nb)
    assert not (tmp_path / "bad_pipeline").exists()


def test_nbconvert_exporter_writes_the_same_pipeline(notebook: Path, tmp_path: Path) -> None:
    export(notebook, tmp_path / "mine" / "demo_pipeline")
    out = tmp_path / "nbc"
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter", "nbconvert", "--to", "mlops", str(notebook),
         "--output-dir", str(out)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for name in ("pipeline.yaml", "README.md", "steps/01_make.ipynb", "steps/02_total.ipynb"):
        # both folders sit two levels below the notebook's, so even relative paths agree
        assert (out / "demo_pipeline" / name).read_text() == \
            (tmp_path / "mine" / "demo_pipeline" / name).read_text()


def test_nbconvert_exporter_reports_problems_in_one_line(tmp_path: Path) -> None:
    nb = write_notebook(tmp_path / "bad.ipynb", "%%mlops step a\ny = x + 1")
    proc = subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "mlops",
                           str(nb)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "bad.ipynb, cell 1 uses `x`" in proc.stderr


def test_show_json_matches_the_export(notebook: Path, cli) -> None:
    shown = cli("show", str(notebook), "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert [s["name"] for s in data["pipeline"]["steps"]] == ["make", "total"]
    roles = {c["number"]: (c["role"], c["step"]) for c in data["cells"]}
    assert roles[3] == ("params", None) and roles[5] == ("step", "make")
    assert roles[7] == ("metrics", "total")
    assert data["problems"] == []


@pytest.mark.parametrize("stem", ['quote"""name', "back\\slash", "it's"])
def test_a_hostile_notebook_name_gives_generated_tests_that_parse(tmp_path: Path,
                                                                   stem: str) -> None:
    import ast

    notebook = write_notebook(tmp_path / f"{stem}.ipynb", "%%mlops step a\nx = 1")
    folder = export(notebook).folder
    source = (folder / "tests" / "test_pipeline.py").read_text(encoding="utf-8")
    tree = ast.parse(source)  # a SyntaxError before
    assert stem in (ast.get_docstring(tree) or "")


@pytest.mark.parametrize("value", ["1e999", "-1e999", "float('nan')", "[1.0, 1e999]"])
def test_a_parameter_that_is_not_finite_stops_the_export(tmp_path: Path, value: str) -> None:
    notebook = write_notebook(tmp_path / "nb.ipynb", f"%%mlops params\nx = {value}",
                              "%%mlops step a\ny = x")
    with pytest.raises(AnalysisError) as info:
        export(notebook)
    assert "cell 1" in str(info.value) or info.value.cell == 1


def test_export_warns_of_a_kernel_not_installed_here(tmp_path: Path) -> None:
    """A notebook saved elsewhere names its kernel (conda-root-py): export said nothing, and
    the run refused to start."""
    path = write_notebook(tmp_path / "away.ipynb", "%%mlops step a\nx = 1")
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["kernelspec"] = {"name": "conda-root-py", "display_name": "Python [Root]",
                                 "language": "python"}
    nbformat.write(nb, str(path))
    said = [w.message for w in export(path).warnings if "not installed" in w.message]
    assert len(said) == 1
    assert said[0].startswith("away.ipynb: its kernel `conda-root-py` is not installed here "
                              "(the kernels are: ")
    assert said[0].endswith("export with --kernel NAME to make another its kernel")
    assert not [w for w in export(path, kernel="python3").warnings
                if "not installed" in w.message]
