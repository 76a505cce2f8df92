"""Where a headless run's captures go: papermill and nbconvert do not tell the kernel its
notebook, so the magics find it (the runner's command line, else the one notebook in the
working folder with the cells that ran), or say in one line that they cannot tell and write
nothing; export says when a stray ``notebook.mlops.json`` may hold a notebook's captures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from conftest import write_notebook

from jupyter_mlops.ipython.kernel import current_notebook, locate_notebook
from jupyter_mlops.pipeline.export import export, plan

CELLS = ("%load_ext jupyter_mlops", "%%mlops params\nalpha = 2  # a factor",
         "%%mlops step s\nscore = alpha * 0.25", "%mlops metrics score")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("JUPYTER_MLOPS_NOTEBOOK", "JPY_SESSION_NAME", "JUPYTER_MLOPS_QUIET")}
    env.update(extra)
    return env


def _outputs(executed: Path) -> list[tuple[str, str]]:
    """(stdout, stderr) of each code cell of an executed notebook."""
    nb = nbformat.read(str(executed), as_version=4)
    return [("".join(o.get("text", "") for o in c.outputs if o.get("name") == "stdout"),
             "".join(o.get("text", "") for o in c.outputs if o.get("name") == "stderr"))
            for c in nb.cells if c.cell_type == "code"]


def _records(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.mlops.json"))


def _papermill(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run([sys.executable, "-m", "papermill", *args, "--no-progress-bar"], cwd=cwd,
                   check=True, capture_output=True, env=env or _env())


def _api_run(notebook: Path, out: Path, cwd: Path, launch: Path) -> None:
    """papermill's Python API from a script: the command line names no notebook."""
    script = (f"import papermill\npapermill.execute_notebook({str(notebook)!r}, {str(out)!r}, "
              f"cwd={str(cwd)!r}, progress_bar=False)\n")
    (launch / "run_it.py").write_text(script)
    subprocess.run([sys.executable, "run_it.py"], cwd=launch, check=True, capture_output=True,
                   env=_env())


@pytest.mark.kernel
def test_papermill_from_another_folder_captures_beside_the_notebook(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "project" / "m.ipynb", *CELLS)
    work = tmp_path / "work"
    work.mkdir()
    # a relative path from the folder papermill runs in, as the examples' README does it
    _papermill("../project/m.ipynb", "out.ipynb", cwd=work)
    assert _records(tmp_path) == ["project/m.mlops.json"]
    record = json.loads((tmp_path / "project" / "m.mlops.json").read_text())
    assert record["params"]["alpha"]["value"] == 2 and record["metrics"]["score"]["value"] == 0.5
    outputs = _outputs(work / "out.ipynb")
    # said once, at the first marked cell, with the reason
    assert outputs[1][0].splitlines()[0] == (
        f"jupyter-mlops: capturing into m.mlops.json beside {notebook}: the notebook papermill "
        "runs (its path on papermill's command line)")
    assert all("capturing into" not in out for out, _ in outputs[2:])
    assert all(not err for _, err in outputs)

    # --cwd elsewhere too: the kernel's folder has no notebook, the command line names it
    (tmp_path / "project" / "m.mlops.json").unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _papermill(str(notebook), str(work / "out2.ipynb"), "--cwd", str(elsewhere), cwd=work)
    assert _records(tmp_path) == ["project/m.mlops.json"]


@pytest.mark.kernel
def test_nbconvert_execute_captures_beside_the_notebook(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path / "project" / "m.ipynb", *CELLS)
    work = tmp_path / "work"
    work.mkdir()
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                    "--execute", "../project/m.ipynb", "--output-dir", "."], cwd=work,
                   check=True, capture_output=True, env=_env())
    assert _records(tmp_path) == ["project/m.mlops.json"]
    outputs = _outputs(work / "m.ipynb")
    assert outputs[1][0].startswith(f"jupyter-mlops: capturing into m.mlops.json beside "
                                    f"{notebook}: the notebook nbconvert runs")
    # the executed copy left in the notebook's own folder does not confuse a second run
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                    "--execute", "m.ipynb"], cwd=notebook.parent, check=True,
                   capture_output=True, env=_env())
    assert (notebook.parent / "m.nbconvert.ipynb").is_file()
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                    "--execute", "m.ipynb"], cwd=notebook.parent, check=True,
                   capture_output=True, env=_env())
    assert _records(tmp_path) == ["project/m.mlops.json"]
    said = _outputs(notebook.parent / "m.nbconvert.ipynb")[1][0]
    assert said.startswith(f"jupyter-mlops: capturing into m.mlops.json beside {notebook}:")
    # nor does the copy `--output` names on the command line, in either spelling
    for output in (["--output", "m_out.ipynb"], ["--output=m_out.ipynb"]):
        subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook",
                        "--execute", "m.ipynb", *output], cwd=notebook.parent, check=True,
                       capture_output=True, env=_env())
        said = _outputs(notebook.parent / "m_out.ipynb")[1][0]
        assert said.startswith(f"jupyter-mlops: capturing into m.mlops.json beside "
                               f"{notebook}:"), said


@pytest.mark.kernel
def test_without_a_command_line_the_matching_notebook_of_the_folder_is_chosen(
        tmp_path: Path) -> None:
    project = tmp_path / "project"
    notebook = write_notebook(project / "m.ipynb", *CELLS)
    # another notebook beside it with other marked cells, and papermill's earlier output
    write_notebook(project / "other.ipynb", "%load_ext jupyter_mlops",
                   "%%mlops params\nalpha = 3")
    _papermill(str(notebook), str(project / "old-output.ipynb"), cwd=tmp_path,
               env=_env(JUPYTER_MLOPS_NOTEBOOK=str(notebook)))
    (project / "m.mlops.json").unlink()
    _api_run(notebook, tmp_path / "out.ipynb", project, tmp_path)
    assert _records(tmp_path) == ["project/m.mlops.json"]
    assert _outputs(tmp_path / "out.ipynb")[1][0].splitlines()[0] == (
        f"jupyter-mlops: capturing into m.mlops.json beside {notebook.resolve()}: it is the "
        f"only notebook in {project} whose marked cells include the ones run so far (the "
        "kernel is not told its notebook; set JUPYTER_MLOPS_NOTEBOOK=path/to/notebook.ipynb "
        "where the kernel starts (in papermill's or nbconvert's environment) to choose)")


@pytest.mark.kernel
def test_two_notebooks_with_the_same_cells_cannot_be_told_apart(tmp_path: Path) -> None:
    project = tmp_path / "project"
    notebook = write_notebook(project / "a.ipynb", *CELLS)
    write_notebook(project / "b.ipynb", *CELLS)
    _api_run(notebook, tmp_path / "out.ipynb", project, tmp_path)
    assert _records(tmp_path) == []
    assert not list(tmp_path.rglob("notebook.mlops*"))
    outputs = _outputs(tmp_path / "out.ipynb")
    # one line, at the first marked cell; nothing more at the later ones
    assert outputs[1] == ("", (
        f"jupyter-mlops: cannot tell which notebook this kernel runs: a.ipynb, b.ipynb in "
        f"{project} all have the marked cells run so far; nothing is captured: set "
        "JUPYTER_MLOPS_NOTEBOOK=path/to/notebook.ipynb where the kernel starts (in "
        "papermill's or nbconvert's environment)\n"))
    assert outputs[2:] == [("", "")] * 2

    # no notebook at all in the kernel's folder: said the same way, nothing written
    empty = tmp_path / "empty"
    empty.mkdir()
    _api_run(notebook, tmp_path / "out2.ipynb", empty, tmp_path)
    assert _records(tmp_path) == [] and not list(tmp_path.rglob("notebook.mlops*"))
    err = _outputs(tmp_path / "out2.ipynb")[1][1]
    assert err == (f"jupyter-mlops: cannot tell which notebook this kernel runs: no notebook "
                   f"in {empty} has this marked cell, and the kernel is not told its notebook; "
                   "nothing is captured: set JUPYTER_MLOPS_NOTEBOOK=path/to/notebook.ipynb "
                   "where the kernel starts (in papermill's or nbconvert's environment)\n")


@pytest.mark.kernel
def test_a_session_name_inherited_from_another_kernel_is_not_the_notebook(
        tmp_path: Path) -> None:
    # `!papermill m.ipynb out.ipynb` in a JupyterLab notebook: the kernel inherits the outer
    # notebook's JPY_SESSION_NAME, which must not receive this notebook's captures
    notebook = write_notebook(tmp_path / "m.ipynb", *CELLS)
    write_notebook(tmp_path / "outer.ipynb", "%load_ext jupyter_mlops")
    _papermill("m.ipynb", "out.ipynb", cwd=tmp_path,
               env=_env(JPY_SESSION_NAME=str(tmp_path / "outer.ipynb")))
    assert _records(tmp_path) == ["m.mlops.json"]
    assert notebook.with_name("m.mlops.json").is_file()


def _shell(**names: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(user_ns=dict(names), user_ns_hidden={})


def test_a_named_notebook_wins_and_the_search_narrows_cell_by_cell(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    setup = "import math"
    write_notebook(tmp_path / "a.ipynb", f"%%mlops setup\n{setup}", "%%mlops params\nx = 1")
    write_notebook(tmp_path / "b.ipynb", f"%%mlops setup\n{setup}", "%%mlops params\nx = 2")
    shell = _shell()
    # a cell that captures nothing and fits both: no decision yet, nothing said
    assert locate_notebook(shell, setup, "setup", captures=False).notebook is None
    assert current_notebook(shell) == Path("notebook.ipynb")
    # the params cell tells them apart
    found = locate_notebook(shell, "x = 2", "params")
    assert found.notebook == (tmp_path / "b.ipynb").resolve() and "only notebook" in found.note
    assert locate_notebook(shell, "x = 2", "params").note == ""  # said once
    assert current_notebook(shell) == (tmp_path / "b.ipynb").resolve()
    # a line-form cell matches by its arguments
    write_notebook(tmp_path / "c.ipynb", "%mlops metrics acc --min acc=0.5")
    assert locate_notebook(_shell(), "", "metrics  acc --min acc=0.5").notebook == \
        (tmp_path / "c.ipynb").resolve()
    # named outright: no search
    monkeypatch.setenv("JUPYTER_MLOPS_NOTEBOOK", str(tmp_path / "a.ipynb"))
    assert locate_notebook(shell, "x = 2", "params").notebook == tmp_path / "a.ipynb"
    assert locate_notebook(_shell(), "y = 1", "params").note == ""
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK")
    assert locate_notebook(_shell(__session__="sub/a.ipynb"), "zzz", "data").notebook == \
        Path("a.ipynb")


def test_export_warns_of_a_stray_record_when_the_notebook_has_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project"
    notebook = write_notebook(project / "m.ipynb", *CELLS)
    monkeypatch.chdir(tmp_path)

    def warnings() -> list[str]:
        return [p.message for p in plan(notebook)[0].problems if "stray" in p.message
                or "no capture record" in p.message]

    unrun = ["m.ipynb has no capture record (m.mlops.json) yet, so the pipeline checks no "
             "captured data, model or metrics and its generated tests skip them: run its "
             "marked cells first, then export again"]
    assert warnings() == []  # the panel's analysis, as cells are marked: nothing to say yet
    assert [p.message for p in export(notebook).warnings
            if "no capture record" in p.message] == unrun  # at export: said
    # a stray in the folder the run was started from
    stray = tmp_path / "notebook.mlops.json"
    stray.write_text(json.dumps({"version": 1, "params": {}, "data": {}, "models": {},
                                 "metrics": {"score": {"value": 0.5}}, "kernel": {}}))
    assert warnings() == [
        f"m.ipynb has no capture record (m.mlops.json), so the pipeline checks no captured "
        f"data, model or metrics; {stray} exists: a papermill or nbconvert run that did not "
        "know its notebook wrote it. If it is this notebook's, rename it to m.mlops.json (and "
        "notebook.mlops/ to m.mlops/), or run the notebook again with "
        f"JUPYTER_MLOPS_NOTEBOOK={notebook.resolve()}"]
    result = export(notebook)
    assert any("no capture record" in w.message and w.severity == "warning"
               for w in result.warnings)
    # ... whose data captures name cells of this notebook: said so
    from jupyter_mlops.notebook.reader import code_key

    key = code_key("score = alpha * 0.25")
    stray.write_text(json.dumps({"version": 1, "params": {}, "models": {}, "metrics": {},
                                 "kernel": {}, "data": {f"df-{key}": {"cell_key": key}}}))
    assert "(its data captures come from cells of this notebook)" in warnings()[0]
    # a notebook.ipynb owns it: not stray
    write_notebook(tmp_path / "notebook.ipynb", "x = 1")
    assert warnings() == []
    (tmp_path / "notebook.ipynb").unlink()
    # the notebook's own record: nothing to say
    project.joinpath("m.mlops.json").write_text(stray.read_text())
    assert warnings() == []
    project.joinpath("m.mlops.json").unlink()
    # a notebook that captures nothing has no use for a record
    plain = write_notebook(project / "plain.ipynb", "%%mlops step s\nx = 1")
    assert not [p for p in plan(plain)[0].problems if "no capture record" in p.message]
    # cells marked by tags capture only through the panel: said how to capture headless
    tagged = project / "tagged.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["mlops:step=s"]}),
        nbformat.v4.new_code_cell("score = 0.5", metadata={"tags": ["mlops:metrics=score"]})])
    nbformat.write(nb, str(tagged))
    said = [p.message for p in export(tagged).warnings if "no capture record" in p.message]
    assert said and said[0].endswith("in a papermill or nbconvert run, mark them with %%mlops)")


def test_executed_copies_beside_the_notebook_are_not_candidates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    write_notebook(tmp_path / "m.ipynb", *CELLS)
    write_notebook(tmp_path / "m.nbconvert.ipynb", *CELLS)  # nbconvert's default output
    copy = nbformat.read(str(tmp_path / "m.ipynb"), as_version=4)  # papermill's output
    copy.metadata["papermill"] = {"input_path": "m.ipynb", "output_path": "out/ran.ipynb"}
    nbformat.write(copy, str(tmp_path / "ran.ipynb"))
    found = locate_notebook(_shell(), "alpha = 2  # a factor", "params")
    assert found.notebook == (tmp_path / "m.ipynb").resolve(), found
    # papermill run in place keeps its notebook a candidate
    copy.metadata["papermill"] = {"input_path": "m.ipynb", "output_path": "m.ipynb"}
    nbformat.write(copy, str(tmp_path / "m.ipynb"))
    assert locate_notebook(_shell(), "alpha = 2  # a factor", "params").notebook == \
        (tmp_path / "m.ipynb").resolve()
