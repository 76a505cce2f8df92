"""``%mlops status``: hidden kernel state against the saved notebook, and what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
from conftest import build_notebook, write_notebook

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.ipython.status import hidden_state, show_status, status_lines
from jupyter_mlops.notebook.reader import SourceNotebook, parse_notebook


def _parse(*cells: object, counts: list[int | None] | None = None) -> SourceNotebook:
    nb = build_notebook(*cells)
    for cell, count in zip(nb.cells, counts or [], strict=False):
        cell.execution_count = count
    return parse_notebook(nbformat.writes(nb), "t.ipynb")


def _messages(notebook: SourceNotebook, namespace: dict, history: list[str] | None = None
              ) -> list[str]:
    problems = hidden_state(notebook, namespace, history)
    assert all(p.severity == "warning" for p in problems)
    return [p.message for p in problems]


# -- (a) names only the kernel has ---------------------------------------------------------
def test_a_name_no_cell_defines_but_the_kernel_has_is_reported_with_its_cells() -> None:
    nb = _parse("import numpy as np",
                "%%mlops step prep\nX = scaler.transform(np.ones(3))",
                "def score():\n    return weights.sum()",
                "%%mlops metrics threshold\ny = 2")
    namespace = {"scaler": object(), "weights": 1, "threshold": 0.5,
                 "np": types.ModuleType("numpy"), "X": 1, "unused": 2}
    assert _messages(nb, namespace) == [
        "`scaler` exists in the kernel but no cell of t.ipynb defines it (cell 2 uses it): the "
        "exported pipeline would fail with NameError; add the cell that makes it",
        "`weights` exists in the kernel but no cell of t.ipynb defines it (cell 3 uses it): "
        "the exported pipeline would fail with NameError; add the cell that makes it",
        # a variable a marked cell names counts as used
        "`threshold` exists in the kernel but no cell of t.ipynb defines it (cell 4 uses it): "
        "the exported pipeline would fail with NameError; add the cell that makes it",
    ]
    problem = hidden_state(nb, namespace)[0]
    assert problem.cell == 2


def test_names_some_cell_defines_even_a_skipped_or_later_one_are_not_hidden_state() -> None:
    nb = _parse("a = b + 1", "b = 1", "%%mlops skip\nc = 2", "d = c + a + e",
                "%%mlops skip\nprint(only_a_plot_uses_it)")
    namespace = {"a": 1, "b": 1, "c": 2, "d": 3, "e": 4, "only_a_plot_uses_it": 5}
    # use-before-define and skipped definitions are the analysis' problems, not these
    assert _messages(nb, namespace) == [
        "`e` exists in the kernel but no cell of t.ipynb defines it (cell 4 uses it): the "
        "exported pipeline would fail with NameError; add the cell that makes it"]


def test_ipython_names_private_names_and_modules_are_ignored() -> None:
    nb = _parse("print(_, __, _i3, _3, In, Out, exit, quit, get_ipython, display, len)",
                "x = os.path.join(_private, 'a')")
    namespace = {"_": 1, "__": 2, "_i3": "x = 1", "_3": 3, "In": ["", "x"], "Out": {},
                 "exit": object(), "quit": object(), "get_ipython": object(),
                 "display": object(), "_private": "p", "os": os, "len": len}
    assert hidden_state(nb, namespace) == []


def test_a_name_several_cells_use_is_one_warning_naming_them_all() -> None:
    nb = _parse("x = helper(1)", "y = helper(2)")
    (message,) = _messages(nb, {"helper": abs})
    assert "(cells 1, 2 use it)" in message


# -- (b) out of order ----------------------------------------------------------------------
def test_cells_that_ran_out_of_order_are_named() -> None:
    nb = _parse("a = 1", "b = a", "c = b", "%%mlops skip\nplot = 1", "d = c", "e = d",
                counts=[1, 5, 2, 9, 3, None])
    assert _messages(nb, {}) == [
        "t.ipynb, cell 3 ran before cell 2 above it (execution counts 2 < 5): the pipeline "
        "runs top to bottom; restart the kernel and run all to check it works"]
    # a skipped cell's count does not matter (plots are re-run at any time), nor a cell that
    # never ran; each descent is one warning
    nb = _parse("a = 1", "b = a", "c = b", "d = c", counts=[4, 3, 2, 5])
    assert [p.cell for p in hidden_state(nb, {})] == [2, 3]


def test_in_order_counts_and_unexecuted_notebooks_give_no_warning() -> None:
    assert hidden_state(_parse("a = 1", "b = a", counts=[3, 7]), {}, None) == []
    assert hidden_state(_parse("a = 1", "b = a"), {}, ["", "x"]) == []


# -- (c) edited after it ran ---------------------------------------------------------------
def test_a_cell_whose_saved_code_is_not_in_the_history_was_edited_after_it_ran() -> None:
    nb = _parse("a = 1", "%%mlops step train\nb = a * 2", "c = b  # changed", "d = c",
                "e = d", counts=[1, 2, 3, 4, 40])
    history = [
        "",
        "a = 1\n",  # trailing blank lines and spaces do not count as an edit
        # `In` holds the cell as IPython transformed it
        "get_ipython().run_cell_magic('mlops', 'step train', 'b = a * 2\\n')",
        "c = b",
        "d = c   ",
    ]
    assert _messages(nb, {}, history) == [
        "t.ipynb, cell 3 was edited after it ran: the kernel holds what the old code made; "
        "run the cell again before you trust or export the results"]
    # cell 5's count 40 is beyond this kernel's history: an earlier kernel ran it
    # raw cells (as IPython's raw history holds them) match too
    raw = ["", "a = 1", "%%mlops step train\nb = a * 2", "c = b  # changed", "d = c"]
    assert hidden_state(nb, {}, raw) == []
    # without a history there is nothing to compare
    assert hidden_state(nb, {}, None) == []


def test_a_cell_run_in_another_position_still_counts_as_run() -> None:
    nb = _parse("a = 1", "b = 2", counts=[2, 1])
    messages = _messages(nb, {}, ["", "b = 2", "a = 1"])
    assert len(messages) == 1 and "cell 2 ran before cell 1" in messages[0]


# -- what %mlops status prints -------------------------------------------------------------
def test_status_lines_list_steps_parameters_and_every_problem(tmp_path: Path) -> None:
    nb = build_notebook("%%mlops params\nC = 0.5\nseed = 0",
                        "%%mlops step prep\nX = scaler.fit_transform([[1.0], [2.0]])",
                        "%%mlops step train\nm = float(X.sum()) * C",
                        "%%mlops metrics\nscore = m")
    for cell, count in zip(nb.cells, [1, 4, 2, 3], strict=True):
        cell.execution_count = count
    nbformat.write(nb, str(tmp_path / "churn.ipynb"))
    lines = status_lines(tmp_path / "churn.ipynb", {"scaler": object(), "C": 1.0, "seed": 0},
                         ["", "%%mlops params\nC = 0.5\nseed = 0", "x", "y", "z"])
    assert lines[0] == ("jupyter-mlops status of churn.ipynb, as saved on disk (save the "
                        "notebook to include edits you have not saved)")
    assert lines[1:7] == [
        "Steps (2):",
        "  1. prep (cell 2); outputs X",
        "  2. train (cells 3-4); inputs X (from prep); outputs score; params C",
        "Parameters:",
        "  C: float = 0.5 (the kernel has 1.0)",
        "  seed: int = 0",
    ]
    problems = lines[lines.index("Problems:") + 1:]
    assert problems[0].startswith("  warning: `scaler` exists in the kernel but no cell of "
                                  "churn.ipynb defines it (cell 2 uses it)")
    assert "  error: churn.ipynb, cell 2 uses `scaler`, which no earlier step" in "\n".join(
        problems)
    # the analysis' own out-of-order warning is replaced by ours, which names the cells
    order = [p for p in problems if "ran before" in p]
    assert order == ["  warning: churn.ipynb, cell 3 ran before cell 2 above it (execution "
                     "counts 2 < 4): the pipeline runs top to bottom; restart the kernel and "
                     "run all to check it works"]
    edited = [p for p in problems if "edited after it ran" in p]
    assert [e.split(",")[1].split(" was")[0] for e in edited] == [" cell 2", " cell 3",
                                                                   " cell 4"]
    assert all(p.startswith(("  error: ", "  warning: ")) for p in problems)


def _shell(**names: object) -> types.SimpleNamespace:
    return types.SimpleNamespace(user_ns=dict(names), user_ns_hidden={"In": names.get("In")})


def test_show_status_prints_for_the_named_or_current_notebook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    write_notebook(tmp_path / "a.ipynb", "%%mlops step one\nx = 1")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK", raising=False)
    show_status(_shell(In=["", "x"]), "a.ipynb")
    out = capsys.readouterr().out
    assert out.startswith("jupyter-mlops status of a.ipynb, as saved on disk")
    assert "  1. one (cell 1)\nParameters: none\nProblems: none found\n" in out
    monkeypatch.setenv("JUPYTER_MLOPS_NOTEBOOK", str(tmp_path / "a.ipynb"))
    show_status(_shell(), "")
    assert "status of a.ipynb" in capsys.readouterr().out


def test_show_status_without_a_notebook_raises_the_one_line_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JUPYTER_MLOPS_NOTEBOOK", raising=False)
    with pytest.raises(MlopsError, match=r"cannot find the notebook notebook.ipynb; name it"):
        show_status(_shell(), "")
    with pytest.raises(MlopsError, match=r"name at most one notebook"):
        show_status(_shell(), "a.ipynb b.ipynb")
    with pytest.raises(MlopsError, match=r"name at most one notebook"):
        show_status(_shell(), "--verbose")


@pytest.mark.kernel
def test_status_in_a_real_kernel_finds_what_only_the_kernel_has(tmp_path: Path) -> None:
    # The kernel runs a version with the cell that defines `secret`; the version saved on
    # disk lost that cell and has cell 2 edited since it ran.
    ran = write_notebook(tmp_path / "ran.ipynb", "%load_ext jupyter_mlops", "secret = 21",
                         "%%mlops step a\nvalue = secret * 2", "%mlops status")
    saved = build_notebook("%load_ext jupyter_mlops", "%%mlops step a\nvalue = secret * 3",
                           "%mlops status")
    for cell, count in zip(saved.cells, [1, 3, 4], strict=True):
        cell.execution_count = count
    nbformat.write(saved, str(tmp_path / "churn.ipynb"))
    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(tmp_path / "churn.ipynb"))
    subprocess.run([sys.executable, "-m", "papermill", str(ran), str(tmp_path / "out.ipynb"),
                    "--cwd", str(tmp_path), "--no-progress-bar"], check=True,
                   capture_output=True, env=env)
    executed = nbformat.read(str(tmp_path / "out.ipynb"), as_version=4)
    text = "".join(o.get("text", "") for o in executed.cells[3].outputs)
    assert "jupyter-mlops status of churn.ipynb, as saved on disk" in text
    assert ("  warning: `secret` exists in the kernel but no cell of churn.ipynb defines it "
            "(cell 2 uses it): the exported pipeline would fail with NameError; add the cell "
            "that makes it") in text
    assert "churn.ipynb, cell 2 was edited after it ran" in text
    # cell 1 ran as saved: the kernel's `In` matches it (magics included)
    assert "cell 1 was edited" not in text
    assert not any(o.output_type == "error" for c in executed.cells for o in c.outputs)


def test_the_summary_says_why_each_failed_step_failed(tmp_path) -> None:
    """Two steps failed: the run's error (the first) is printed after the table, the other
    had no reason anywhere but run.json."""
    from jupyter_mlops.run.report import summary
    from jupyter_mlops.run.results import RunResult, StepResult

    first = "step `cv_iris` failed at cell 12 of mev.ipynb: ValueError: bad\nmore"
    result = RunResult(run_id="r1", folder=tmp_path, pipeline="p", parameters={}, steps=[
        StepResult("cv_iris", status="failed", started=1.0, ended=3.0, error=first),
        StepResult("digits9", status="failed", started=1.0, ended=3.3,
                   error="step `digits9` failed at cell 20 of mev.ipynb: KeyError: 'x'\n..."),
        StepResult("late", status="not run")],
        status="failed", started=0.0, ended=4.0, error=first)
    lines = summary(result).splitlines()
    assert lines[1].split() == ["cv_iris", "failed", "2.0", "s"]
    assert lines[2].endswith("step `digits9` failed at cell 20 of mev.ipynb: KeyError: 'x'")
    assert lines[3].split() == ["late", "not", "run", "-"]
