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
from playwright.sync_api import expect
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
        # A control is drawn from the cell's own mark first and drawn again once the
        # notebook's analysis arrives (the other steps, what each cell binds): wait for it.
        train = control(page, 3)
        expect(train.locator('select[aria-label="step name"] option')).to_have_text(
            ["train", "load", "new…"], timeout=30_000)
        assert train.locator('select[aria-label="step name"]').input_value() == "train"
        # the names the cell assigns, none recorded yet
        names = metrics.locator("input[data-name]")
        expect(names).to_have_count(2, timeout=30_000)
        assert names.evaluate_all("els => els.map(e => e.dataset.name)") == ["w", "score"]
        assert not any(names.evaluate_all("els => els.map(e => e.checked)"))
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


AFTER_CELLS = [
    "%load_ext jupyter_mlops",
    "%%mlops step a\nx = 1",
    "%%mlops step b\ny = 2",
    ("%%mlops step c --after a\nz = 3"),
    ("q = 4", ["mlops:step=d", "keep-me"]),
    "%%mlops metrics score\nscore = 0.5",
]


def test_after_choices_and_thresholds_in_the_inline_control(tmp_path: Path,
                                                            browser: Any) -> None:
    """A step's "after" boxes write `--after` (or `mlops:after=` tags) and refuse a cycle; a
    `%%mlops metrics` cell's min and max fields write `--min`/`--max`."""
    page = browser
    root = tmp_path / "root"
    path = write_notebook(root / "after.ipynb", *AFTER_CELLS)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "after.ipynb")
        c = control(page, 3)
        c.locator('input[data-after="a"]').wait_for(timeout=30_000)
        boxes = c.locator("input[data-after]")
        assert boxes.evaluate_all("els => els.map(e => [e.dataset.after, e.checked])") == [
            ["a", True], ["b", False], ["d", False]]
        c.locator('input[data-after="b"]').check()
        saved_cell(path, lambda x: source(x).startswith("%%mlops step c --after a b\n"),
                   "--after a b")
        control(page, 3).locator('input[data-after="a"]').uncheck()
        saved_cell(path, lambda x: source(x) == "%%mlops step c --after b\nz = 3",
                   "--after b alone")
        # the tag spelling: one tag a step, other tags kept
        control(page, 4).locator('input[data-after="c"]').check()
        saved_cell(path, lambda x: x["metadata"].get("tags") == [
            "keep-me", "mlops:step=d", "mlops:after=c"] or x["metadata"].get("tags") == [
            "mlops:step=d", "keep-me", "mlops:after=c"], "the mlops:after tag")
        # once the panel has analysed it: b after d would close b -> c -> d -> b
        edge(page, "c", "d").wait_for(state="attached", timeout=30_000)
        edge(page, "b", "c").wait_for(state="attached", timeout=30_000)
        before = path.read_text()
        control(page, 2).locator('input[data-after="d"]').click()  # refused: stays unticked
        problem = control(page, 2).locator(".jp-mlops-inline-problem")
        problem.wait_for()
        assert problem.text_content() == ("Step b cannot run after d: d already runs after b, "
                                          "which would make a cycle.")
        assert not control(page, 2).locator('input[data-after="d"]').is_checked()
        assert path.read_text() == before

        # thresholds of a metrics cell
        m = control(page, 5)
        low = m.locator('input[aria-label="minimum of a metric"]')
        low.fill("score=0.4")
        low.press("Enter")
        saved_cell(path, lambda x: source(x).startswith("%%mlops metrics score --min score=0.4\n"),
                   "--min")
        high = control(page, 5).locator('input[aria-label="maximum of a metric"]')
        high.fill("score=oops")
        high.press("Enter")
        problem = control(page, 5).locator(".jp-mlops-inline-problem")
        problem.wait_for()
        assert "`score=oops` is not NAME=NUMBER" in problem.text_content()
        shot(page, "inline-3-after-and-thresholds")
    assert page.errors == []
