"""Inline role control (issue "sidebar as a daily tool", item 2): a compact control at the top
of each marked cell sets its role, its step (an existing one or a new name) and the names a
data, model or metrics cell records, in the spelling the cell uses. Same browser and lab as
test_browser.py; screenshots in ``test-artifacts/browser/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_browser
from conftest import write_notebook
from labserver import running_lab
from test_browser import open_sidebar, shot
from test_browser_daily import saved_cell, source
from test_browser_graph import edge

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser

CELLS = [
    "%load_ext jupyter_mlops",
    "%%mlops step load\nX = [1.0, 2.0, 3.0]\ny = [1.0, 0.0, 1.0]",
    ("w = sum(X)\nscore = sum(y) / len(y)", ["mlops:metrics"]),
    "%%mlops step train\nm = sum(X) / len(X)",
    "print(m)",
]


def control(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-mlops-inline")


def test_the_inline_control_marks_its_cell(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    path = write_notebook(root / "inline.ipynb", *CELLS)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "inline.ipynb")
        control(page, 3).wait_for(timeout=30_000)
        # marked cells have one, others none
        assert [control(page, i).count() for i in range(5)] == [0, 1, 1, 1, 0]
        metrics = control(page, 2)
        assert metrics.locator('select[aria-label="cell role"]').input_value() == "metrics"
        # the names the cell assigns, none recorded yet
        names = metrics.locator("input[data-name]")
        assert names.evaluate_all("els => els.map(e => e.dataset.name)") == ["w", "score"]
        assert not any(names.evaluate_all("els => els.map(e => e.checked)"))
        train = control(page, 3)
        assert train.locator('select[aria-label="step name"]').input_value() == "train"
        assert train.locator('select[aria-label="step name"] option').all_text_contents() == [
            "train", "load", "new…"]
        shot(page, "inline-1-controls")

        # a name picked: the tag spelling, one tag a name
        metrics.locator('input[data-name="score"]').check()
        cell = saved_cell(path, lambda c: "mlops:metrics=score" in c["metadata"].get("tags", []),
                          "the metrics tag")
        assert cell["metadata"]["tags"] == ["mlops:metrics=score"]
        assert source(cell).startswith("w = sum(X)")
        control(page, 2).locator('input[data-name="score"]:checked').wait_for()

        # a new step name on a magic cell: its first line rewritten; the graph follows
        train.locator('select[aria-label="step name"]').select_option(label="new…")
        typed = train.locator('input[aria-label="new step name"]')
        typed.fill("fit")
        typed.press("Enter")
        saved_cell(path, lambda c: source(c) == "%%mlops step fit\nm = sum(X) / len(X)",
                   "the renamed step")
        page.locator('.jp-mlops-graph-node[data-step="fit"]').wait_for(timeout=30_000)
        edge(page, "load", "fit").wait_for(state="attached")

        # the role dropdown: metrics becomes data, in the cell's tag spelling
        control(page, 2).locator('select[aria-label="cell role"]').select_option("data")
        cell = saved_cell(path, lambda c: c["metadata"].get("tags") == ["mlops:data"],
                          "the data tag")
        assert source(cell).startswith("w = sum(X)")
        page.locator(".jp-Notebook .jp-Cell").nth(2).locator(
            '.jp-mlops-badge:has-text("data")').wait_for(timeout=30_000)
        # the control still fits beside the cell: nothing scrolls sideways
        assert page.locator(".jp-Notebook").evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        shot(page, "inline-2-changed")
    assert page.errors == []
