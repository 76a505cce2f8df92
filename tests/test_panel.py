"""``%mlops panel``: the widgets hold what the record and the analysis say; Export and Run work."""

from __future__ import annotations

import time
import types
from collections.abc import Iterator
from pathlib import Path

import ipywidgets as widgets
import pandas as pd
import pytest
from conftest import write_notebook

from jupyter_mlops.ipython.panel import MlopsPanel, build_panel, show_panel
from jupyter_mlops.notebook.captures import update_record
from jupyter_mlops.runtime.profile import profile_data

CELLS = (
    "%%mlops params\nn = 3  # rows\nC = 0.5",
    "%%mlops step prepare\nimport pandas as pd\ndf = pd.DataFrame({'a': range(n), "
    "'b': [1.0, None, 3.0][:n]})",
    "%mlops data df",
    "%%mlops metrics\nscore = float(df['a'].sum()) * C",
)


def _walk(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _texts(panel: widgets.Widget) -> str:
    return "\n".join(w.value for w in _walk(panel)
                     if isinstance(w, (widgets.HTML, widgets.Label)))


def _button(panel: widgets.Widget, description: str) -> widgets.Button:
    (button,) = [w for w in _walk(panel)
                 if isinstance(w, widgets.Button) and w.description == description]
    return button


def _output(panel: widgets.Widget) -> str:
    (output,) = [w for w in _walk(panel) if isinstance(w, widgets.Output)]
    return "".join(o.get("text", "") for o in output.outputs)


@pytest.fixture
def notebook(tmp_path: Path) -> Iterator[Path]:
    path = write_notebook(tmp_path / "churn.ipynb", *CELLS)
    yield path
    widgets.Widget.close_all()


def _record(path: Path) -> None:
    frame = pd.DataFrame({"a": [0, 1, 2], "b": [1.0, None, 3.0]})
    from jupyter_mlops.notebook.reader import code_key, read_notebook

    update_record(path, "params", {"n": {"value": 4, "type": "int", "help": "rows"},
                                   "C": {"value": 0.5, "type": "float", "help": ""}})
    data_cell = read_notebook(path).cells[2]  # as the magic keys it: the code under its line
    update_record(path, "data", {
        "df-new": {"variable": "df", "cell_key": code_key(data_cell.code),
                   "profile": profile_data(frame, "df")},
        "df-old": {"variable": "df", "cell_key": "0123456789ab",
                   "profile": profile_data(frame.head(1), "df")}})
    update_record(path, "models", {"clf": {
        "class": "sklearn.ensemble._forest.RandomForestClassifier", "fitted": True,
        "params": {"n_estimators": 300, "max_depth": 8, "bootstrap": True, "verbose": 0}}})
    update_record(path, "metrics", {"score": {"value": 1.5, "direction": "higher",
                                              "min": 1.425}})


def test_the_panel_shows_parameters_data_model_metrics_and_problems(notebook: Path) -> None:
    _record(notebook)
    fingerprint = profile_data(pd.DataFrame({"a": [0, 1, 2], "b": [1.0, None, 3.0]}),
                               "df")["fingerprint"][:12]
    panel = build_panel(notebook, namespace={"leftover": 1, "n": 3},
                        history=["", "x = leftover"])
    text = _texts(panel)
    assert "<b>churn.ipynb</b> as saved on disk: 1 step(s): prepare" in text
    assert "<li>n: int = 3 (recorded 4) - rows</li><li>C: float = 0.5</li>" in text
    assert (f"<li>df: 3 rows x 2 columns; nulls: b 33.3%; fingerprint {fingerprint}</li>"
            "<li>df: 1 rows x 2 columns; nulls: none; fingerprint ") in text
    # an entry no current cell made: its cell changed since
    assert "(recorded from an earlier version of its cell)</li></ul>" in text
    assert ("<li>clf: RandomForestClassifier (fitted); n_estimators=300, max_depth=8</li>"
            in text)
    assert "<li>score = 1.5 (a run fails under 1.425)</li>" in text
    assert "<h4>Problems</h4><p><i>none found</i></p>" in text
    assert [b.description for b in _walk(panel) if isinstance(b, widgets.Button)] == [
        "Export", "Run"]


def test_problems_include_the_analysis_and_hidden_kernel_state(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "leak.ipynb", "%%mlops step a\ny = scaler + 1")
    panel = build_panel(path, namespace={"scaler": 1})
    text = _texts(panel)
    assert "<h4>Model</h4><p><i>no model recorded yet</i></p>" in text
    assert ("<li>warning: `scaler` exists in the kernel but no cell of leak.ipynb defines it "
            "(cell 1 uses it)") in text
    assert "<li>error: leak.ipynb, cell 1 uses `scaler`, which no earlier step" in text
    widgets.Widget.close_all()


def test_export_writes_the_pipeline_folder_and_says_so(notebook: Path) -> None:
    panel = build_panel(notebook)
    _button(panel, "Export").click()
    folder = notebook.parent / "churn_pipeline"
    assert (folder / "pipeline.yaml").is_file()
    # the notebook's marked cells never ran here: export says so
    assert _output(panel).splitlines() == [
        f"exported 1 step(s) to {folder}",
        "warning: churn.ipynb has no capture record (churn.mlops.json) yet, so the pipeline "
        "checks no captured data, model or metrics and its generated tests skip them: run its "
        "marked cells first, then export again"]
    assert "exported" in _texts(panel)


def test_a_failed_export_shows_its_one_line_and_writes_nothing(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "bad.ipynb", "%%mlops step a\ny = undefined_name")
    panel = build_panel(path)
    _button(panel, "Export").click()
    assert _output(panel) == ("export failed: bad.ipynb, cell 1 uses `undefined_name`, which "
                              "no earlier step or setup cell defines; define it in an earlier "
                              "cell or mark the cell that defines it\n")
    assert not (tmp_path / "bad_pipeline").exists()
    _button(panel, "Run").click()
    assert _output(panel) == f"no pipeline at {tmp_path / 'bad_pipeline'} yet: click Export first\n"
    widgets.Widget.close_all()


def test_show_panel_displays_the_panel_of_the_named_notebook(
        notebook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[object] = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    shell = types.SimpleNamespace(user_ns={"In": [""]}, user_ns_hidden={})
    show_panel(shell, str(notebook))
    (panel,) = shown
    assert isinstance(panel, MlopsPanel) and panel.notebook == notebook


@pytest.mark.kernel
def test_run_goes_on_in_the_background_and_shows_each_step(notebook: Path) -> None:
    panel = build_panel(notebook)
    _button(panel, "Export").click()
    run = _button(panel, "Run")
    run.click()
    assert isinstance(panel, MlopsPanel) and panel.thread is not None
    # the click returned at once; the buttons wait for the run
    assert run.disabled and _button(panel, "Export").disabled
    deadline = time.monotonic() + 120
    while panel.thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not panel.thread.is_alive()
    assert panel.status.value == "run succeeded"
    shown = _output(panel)
    assert "prepare: started\nprepare: done in " in shown
    assert " succeeded in " in shown and "score = 1.5" in shown
    assert not run.disabled
