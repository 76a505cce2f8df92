"""One-click marking of the cells that look like preparation (issue "serve the pipeline"):
the sidebar's hint lists them, "Mark as prepare" marks them in the spelling each cell uses,
the notebook is saved, and its analysis then has an inference plan. Same browser and lab as
test_browser.py; screenshots in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
import test_browser
from conftest import EXAMPLES, write_notebook
from labserver import running_lab
from test_browser import open_sidebar, shot
from test_browser_daily import saved_cells, select_cell, source, wait_until

from jupyter_mlops.notebook.analysis import analyze
from jupyter_mlops.notebook.reader import read_notebook

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser


def preparing(path: Path) -> list[int]:
    """The numbers of the saved cells marked as preparing data, in either spelling (none
    while the lab is halfway through writing the file)."""
    return [i + 1 for i, c in enumerate(saved_cells(path))
            if "--prepare" in source(c).split("\n")[0].split()
            or source(c).startswith("%%mlops prepare")
            or "mlops:prepare" in c["metadata"].get("tags", [])]


def saved_source(path: Path, index: int) -> str:
    """The saved source of cell ``index`` (0-based); "" while the lab is halfway through
    writing the file."""
    cells = saved_cells(path)
    return source(cells[index]) if index < len(cells) else ""


def hint_cells(page: Any) -> list[str]:
    """The cell links of the sidebar's preparation line."""
    return page.locator(".jp-mlops-inference .jp-mlops-link").evaluate_all(
        "els => els.map(e => e.textContent)")


def tags_of(path: Path, index: int) -> list[str] | None:
    cells = saved_cells(path)
    return cells[index]["metadata"].get("tags", []) if len(cells) > index else None


def test_mark_the_suggested_cells_prepare_in_churn(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    shutil.copytree(EXAMPLES / "churn", root / "churn",
                    ignore=shutil.ignore_patterns("*_pipeline", "*.mlops*"))
    path = root / "churn" / "churn.ipynb"
    original = nbformat.read(str(path), as_version=4)
    assert preparing(path) == [13, 14]
    path.write_text(path.read_text().replace(" --prepare", ""))
    assert preparing(path) == []
    assert analyze(read_notebook(path)).suggested_prepare == [13, 14]

    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "churn/churn.ipynb")
        hint = page.locator(".jp-mlops-suggested-prepare")
        hint.wait_for(timeout=60_000)
        assert hint_cells(page) == ["[13]", "[14]"]
        assert "look like preparation" in hint.text_content()
        button = page.locator("button.jp-mlops-mark-prepare")
        assert "jp-Button" in button.get_attribute("class")
        assert button.text_content() == "Mark as prepare"
        hint.scroll_into_view_if_needed()
        shot(page, "prepare-1-suggested")

        button.click()
        wait_until(lambda: preparing(path) == [13, 14], "the --prepare flags in the file")
        # the cells read exactly as the example spells them: --prepare on the first line of
        # the step and the data cell, nothing else of the notebook changed
        saved = nbformat.read(str(path), as_version=4)
        assert saved.cells[12].source.split("\n")[0] == "%%mlops step clean --prepare"
        assert saved.cells[13].source.split("\n")[0] == "%%mlops data df --prepare"
        assert [c.source for c in saved.cells] == [c.source for c in original.cells]
        assert not any("mlops:prepare" in c.metadata.get("tags", []) for c in saved.cells)
        analysis = analyze(read_notebook(path))
        assert analysis.inference is not None and analysis.suggested_prepare == []
        assert [c["cell"] for c in analysis.inference.to_dict()["cells"]] == [13, 14]

        # the panel analysed the saved notebook: the prepare cells and the raw records
        line = page.locator('.jp-mlops-inference:has-text("raw records:")')
        line.wait_for(timeout=30_000)
        assert " ".join(line.text_content().split()) == (
            "raw records: df of load, prepared by [13] [14] for serve and predict")
        assert page.locator(".jp-mlops-suggested-prepare").count() == 0
        shot(page, "prepare-2-marked")

        # a role change keeps the flag, the role controls toggle it
        page.evaluate("() => { window.jupyterapp.shell.currentWidget.content"
                      ".activeCellIndex = 13; }")
        page.locator('.jp-mlops-hint:has-text("Mark cell 14 (data, magic)")').wait_for()
        toggle = page.locator(".jp-mlops-prepare-toggle input")
        assert toggle.is_checked()
        page.locator('input[aria-label="step name"]').fill("features")
        page.locator('button.jp-mlops-role[data-role="step"]').click()
        first = "%%mlops step features --prepare\n"
        wait_until(lambda: saved_source(path, 13).startswith(first), "the role change")
        toggle.uncheck()
        wait_until(lambda: saved_source(path, 13).startswith("%%mlops step features\n"),
                   "--prepare taken off")
        page.locator('button.jp-mlops-role[data-role="none"]').click()
        wait_until(lambda: saved_source(path, 13) == original.cells[13].source.split(
            "\n", 1)[1], "the mark cleared")
        wait_until(lambda: preparing(path) == [13], "only cell 13 left preparing")
    assert page.errors == []


def test_tag_spelling_marks_prepare_with_tags(tmp_path: Path, browser: Any) -> None:
    """With the user's setting `tag`, a tag-marked step gets `mlops:prepare` beside its tag
    and an unmarked cell the tag alone; no source changes, no %load_ext cell."""
    page = browser
    root = tmp_path / "root"
    cells = [("import pandas as pd\nfrom sklearn.linear_model import LinearRegression",
              ["mlops:setup"]),
             ('df = pd.read_csv("data.csv")', ["mlops:step=load"]),
             ("df = df.dropna()", ["mlops:step=clean", "keep-me"]),
             'df["z"] = df["x"] * 2',
             ("model = LinearRegression().fit(df[['x', 'z']], df['y'])", ["mlops:step=train"])]
    path = write_notebook(root / "tags.ipynb", *cells)
    before = [source(c) for c in saved_cells(path)]
    with running_lab(root, tmp_path / "lab", mlops_settings={"markSpelling": "tag"}) as lab:
        open_sidebar(page, lab, "tags.ipynb")
        page.locator(".jp-mlops-suggested-prepare").wait_for(timeout=60_000)
        assert hint_cells(page) == ["[3]", "[4]"]
        page.locator("button.jp-mlops-mark-prepare").click()
        wait_until(lambda: preparing(path) == [3, 4], "the mlops:prepare tags")
        assert tags_of(path, 2) == ["mlops:step=clean", "keep-me", "mlops:prepare"]
        assert tags_of(path, 3) == ["mlops:prepare"]
        assert [source(c) for c in saved_cells(path)] == before
        analysis = analyze(read_notebook(path))
        assert analysis.inference is not None
        assert [c["cell"] for c in analysis.inference.to_dict()["cells"]] == [3, 4]
        page.locator('.jp-mlops-inference:has-text("raw records: df of load")').wait_for(
            timeout=30_000)
        shot(page, "prepare-3-tags")

        # a role change keeps the tag; the toggle takes it off; clear removes every role tag
        select_cell(page, 2)
        page.locator('.jp-mlops-hint:has-text("Mark cell 3 (step, tag)")').wait_for()
        page.locator('input[aria-label="step name"]').fill("tidy")
        page.locator('button.jp-mlops-role[data-role="step"]').click()
        wait_until(lambda: tags_of(path, 2) == ["keep-me", "mlops:step=tidy", "mlops:prepare"],
                   "the renamed step keeping its prepare tag")
        page.locator(".jp-mlops-prepare-toggle input").uncheck()
        wait_until(lambda: tags_of(path, 2) == ["keep-me", "mlops:step=tidy"], "prepare off")
        page.locator(".jp-mlops-prepare-toggle input").check()
        wait_until(lambda: tags_of(path, 2) == ["keep-me", "mlops:step=tidy", "mlops:prepare"],
                   "prepare on again")
        page.locator('button.jp-mlops-role[data-role="none"]').click()
        wait_until(lambda: tags_of(path, 2) == ["keep-me"], "the marks cleared")
    assert page.errors == []
