"""A graph you can work with (issue "sidebar as a daily tool", item 3): a click on a step
selects its cells, a hover shows what flows in and out, a drag from one step to another writes
`--after` (magic line or tag, per the cell's spelling) and a drag that would make a cycle is
refused in one line. Same browser and lab as test_browser.py; screenshots in
``test-artifacts/browser/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
import test_browser
from conftest import write_notebook
from labserver import running_lab
from test_browser import open_sidebar, shot
from test_browser_daily import analyses, wait_for_analysis_after, wait_until

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser

CELLS = [
    "%load_ext jupyter_mlops",
    "%%mlops params\nn = 3",
    "%%mlops step load\na = list(range(n))",
    "b = [x * 2 for x in a]",
    "%%mlops step other\nc = n + 1",
    ("d = c * 2", ["mlops:step=tagged"]),
    ("e = n * 3", ["keep", "mlops:step=extra"]),
]


def node(page: Any, step: str) -> Any:
    return page.locator(f'.jp-mlops-graph-node[data-step="{step}"]')


def drag(page: Any, source: str, target: str) -> None:
    """Press on one step's box, move over another's, let go."""
    a = node(page, source).locator("rect").bounding_box()
    b = node(page, target).locator("rect").bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=8)
    page.mouse.up()


def edge(page: Any, before: str, after: str) -> Any:
    return page.locator(f'.jp-mlops-graph-edge[data-from="{before}"][data-to="{after}"]')


def cell_states(page: Any) -> list[Any]:
    """The active cell's index and the indexes of the selected cells."""
    return page.evaluate(
        "() => { const nb = window.jupyterapp.shell.currentWidget.content;"
        " return [nb.activeCellIndex, nb.widgets.map((c, i) => nb.isSelectedOrActive(c) ? i : -1)"
        ".filter(i => i >= 0)]; }")


def saved(path: Path, index: int) -> Any:
    """Cell ``index`` as nbformat reads the saved file (None while it is being written)."""
    try:
        return nbformat.read(str(path), as_version=4).cells[index]
    except Exception:  # the lab writes the file in place: read it again
        return None


def test_click_hover_and_drag_on_the_graph(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    path = write_notebook(root / "graph.ipynb", *CELLS)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "graph.ipynb")
        node(page, "extra").wait_for(timeout=30_000)
        edge(page, "other", "tagged").wait_for(state="attached")
        assert page.locator(".jp-mlops-graph-edge").count() == 1  # other -> tagged: c flows

        # a click selects the step's cells: the first active and scrolled to, all selected
        node(page, "load").click()
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content"
                               ".activeCellIndex === 2")
        assert cell_states(page) == [2, [2, 3]]
        node(page, "tagged").click()
        page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content"
                               ".activeCellIndex === 5")
        assert cell_states(page) == [5, [5]]

        # a hover shows the whole name and what flows in and out
        node(page, "tagged").hover()
        info = page.locator('.jp-mlops-graph-info[data-step="tagged"]')
        info.wait_for()
        assert info.inner_text().split("\n") == ["tagged", "in: c ← other", "out: nothing"]
        node(page, "other").hover()
        info = page.locator('.jp-mlops-graph-info[data-step="other"]')
        assert info.inner_text().split("\n") == ["other", "in: nothing", "out: c"]
        assert "out: c" in node(page, "other").locator("title").text_content()
        shot(page, "graph-1-selected-hover")

        # a drag between two independent steps: `--after` on the target's magic line, saved
        count = analyses(page)
        drag(page, "load", "other")
        cell = wait_until(lambda: (c := saved(path, 4)) and "--after" in c.source and c,
                          "the --after option in the saved file")
        assert cell.source == "%%mlops step other --after load\nc = n + 1"
        wait_for_analysis_after(page, count)
        edge(page, "load", "other").wait_for(state="attached", timeout=30_000)
        assert page.locator(".jp-mlops-graph-problem").count() == 0

        # ... and the tag `mlops:after=load` on a tag-marked step, its other tags kept
        count = analyses(page)
        drag(page, "load", "extra")
        cell = wait_until(lambda: (c := saved(path, 6)) and len(c.metadata.get("tags", [])) > 2
                          and c, "the after tag in the saved file")
        assert cell.metadata["tags"] == ["keep", "mlops:step=extra", "mlops:after=load"]
        assert cell.source == "e = n * 3"
        wait_for_analysis_after(page, count)
        edge(page, "load", "extra").wait_for(state="attached", timeout=30_000)
        shot(page, "graph-2-dragged")

        # a drag that would make a cycle: refused in one line, nothing written
        before = path.read_text()
        drag(page, "tagged", "load")
        problem = page.locator(".jp-mlops-graph-problem")
        problem.wait_for()
        assert problem.text_content() == ("Step load cannot run after tagged: tagged already "
                                          "runs after load, which would make a cycle.")
        assert path.read_text() == before
        assert not page.evaluate("() => window.jupyterapp.shell.currentWidget.context.model.dirty")
        shot(page, "graph-3-cycle-refused")
    assert page.errors == []
