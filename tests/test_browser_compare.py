"""The run history as a daily tool (issue "sidebar as a daily tool", item 6): each run with its
parameters and how it started; two runs checked and compared side by side in the panel. Two
real runs of a small pipeline with different parameters; same browser and lab as
test_browser.py; screenshots in ``test-artifacts/browser/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_browser
from labserver import running_lab
from test_browser import open_sidebar, shot
from test_compare import two_runs

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser


def cells(row: Any) -> list[str]:
    """The texts of a comparison row: name, A, B."""
    return [" ".join(t.split()) for t in row.locator("td").all_text_contents()]


def test_compare_two_runs_side_by_side(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    _, (first, second) = two_runs(root)  # scale = 2, then -p scale=3
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "work/small.ipynb")
        rows = page.locator(".jp-mlops-history-row")
        rows.nth(1).wait_for(timeout=60_000)
        assert rows.evaluate_all("els => els.map(e => e.dataset.run)") == [second, first]
        # each run: how it started and its parameters, on the line under its id
        newer, older = (page.locator(f'.jp-mlops-history-row[data-run="{r}"]')
                        for r in (second, first))
        assert newer.locator(".jp-mlops-run-params").text_content().strip() == "scale=3"
        assert older.locator(".jp-mlops-run-params").text_content().strip() == "scale=2"
        for row in (newer, older):
            trigger = row.locator(".jp-mlops-history-more [data-trigger]")
            assert trigger.get_attribute("data-trigger") == "manual"
            assert trigger.text_content() == "manual"

        compare = page.locator("button.jp-mlops-compare")
        assert "jp-Button" in compare.get_attribute("class")
        assert compare.is_disabled()
        newer.locator(".jp-mlops-run-select").check()
        assert compare.is_disabled()  # one run is not a comparison
        older.locator(".jp-mlops-run-select").check()
        assert compare.is_enabled()
        compare.click()

        view = page.locator(".jp-mlops-comparison")
        view.wait_for(timeout=30_000)
        # A is the older run, whichever was checked first
        assert (view.get_attribute("data-a"), view.get_attribute("data-b")) == (first, second)
        scale = view.locator('[data-section="parameters"] tr[data-name="scale"]')
        assert cells(scale) == ["scale", "2", "3"]
        assert "jp-mlops-changed" in scale.get_attribute("class")
        score = view.locator('[data-section="metrics"] tr[data-name="score"]')
        assert cells(score) == ["score", "0.2", "0.3 (+0.1)"]
        assert "jp-mlops-changed" in score.get_attribute("class")
        # the data read is the same file: not listed, counted; the outputs made differ
        data = view.locator('[data-section="data"]')
        assert "1 unchanged" in data.text_content()
        assert data.locator("tr[data-name]").count() == 0
        outputs = view.locator('[data-section="outputs"] tr[data-name]')
        assert "make.values" in outputs.evaluate_all("els => els.map(e => e.dataset.name)")
        # side by side within the panel's default width: nothing scrolls sideways
        for selector in (".jp-mlops-sidebar", ".jp-mlops-compare-table", ".jp-mlops-history"):
            assert page.locator(selector).evaluate("e => e.scrollWidth <= e.clientWidth + 1"), \
                selector
        view.scroll_into_view_if_needed()
        shot(page, "compare-1-side-by-side")

        view.locator(".jp-mlops-comparison-close").click()
        view.wait_for(state="detached")
    assert page.errors == []
