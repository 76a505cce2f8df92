"""The sidebar as a daily tool (issue 19, its frontend): one marking model for both spellings,
tag-marked cells that capture, badges that follow their cells, the dark theme, the palette and
context menu, a panel that survives a reload, and a retry when the server extension is
missing. Same browser and lab as test_browser.py; screenshots in ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_browser
from conftest import EXAMPLES, write_notebook
from labserver import running_lab
from test_browser import open_sidebar, shot

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser

#: WCAG AA for normal text.
MIN_CONTRAST = 4.5


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Poll ``condition`` (a look at a file the lab writes) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def saved_cells(path: Path) -> list[dict[str, Any]]:
    """The cells as saved; none while the lab is halfway through writing the file."""
    try:
        return json.loads(path.read_text())["cells"]
    except (ValueError, KeyError):
        return []


def source(cell: dict[str, Any]) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def saved_cell(path: Path, predicate: Callable[[dict[str, Any]], bool], what: str,
               timeout: float = 30) -> dict[str, Any]:
    """The first saved cell for which ``predicate`` holds, once the file has it."""
    return wait_until(lambda: next((c for c in saved_cells(path) if predicate(c)), None),
                      what, timeout)


def command(page: Any, name: str, args: dict[str, Any] | None = None) -> Any:
    """Run a JupyterLab command, as the palette or a menu would."""
    return page.evaluate("([name, args]) => window.jupyterapp.commands.execute(name, args)",
                         [name, args or {}])


def analyses(page: Any) -> int:
    """How many analyses the panel has shown for its notebook."""
    return int(page.locator(".jp-mlops-sidebar").get_attribute("data-analyses") or 0)


def wait_for_analysis_after(page: Any, count: int) -> None:
    page.wait_for_function(
        "n => Number(document.querySelector('.jp-mlops-sidebar')?.dataset.analyses) > n",
        arg=count, timeout=30_000)


def select_cell(page: Any, index: int) -> None:
    """Make cell ``index`` active (command mode), as a click on its prompt does."""
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").click()
    page.wait_for_function(
        "i => document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
        "?.classList.contains('jp-mod-active')", arg=index)


def badges(page: Any) -> list[str]:
    """Each cell's badge text ("" for none), in the notebook's order (from the notebook's cell
    widgets: the page attaches a long notebook's cells to the document a few at a time)."""
    return page.evaluate(
        "() => window.jupyterapp.shell.currentWidget.content.widgets.map("
        "c => c.node.querySelector(':scope > .jp-mlops-badge')?.textContent ?? '')")


def cell_count(page: Any) -> int:
    return page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")


def wait_for_kernel(page: Any) -> None:
    """Wait until the current notebook's kernel is up and idle (a cell run before that is
    not run at all)."""
    page.wait_for_function(
        "() => { const k = window.jupyterapp.shell.currentWidget?.sessionContext?.session"
        "?.kernel; return !!k && k.status === 'idle' && k.connectionStatus === 'connected'; }",
        timeout=120_000)


def run_all(page: Any) -> None:
    """Run every cell and wait until each code cell has its execution count."""
    wait_for_kernel(page)
    command(page, "notebook:run-all-cells")
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.content.widgets"
        ".filter(c => c.model.type === 'code').every(c => c.model.executionCount !== null)",
        timeout=180_000)


# -- one marking model ------------------------------------------------------------------------

def test_a_role_change_rewrites_the_spelling_the_cell_uses(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    path = write_notebook(
        root / "marks.ipynb",
        "print('hello')",
        "%%mlops setup\nfrom sklearn.linear_model import Ridge\nimport numpy as np",
        "%%mlops step load\nX = np.ones((6, 2))\ny = np.ones(6)",
        # a magic and a conflicting tag, as the old buttons left it
        ("%%mlops skip\nprint(X.shape)", ["mlops:step=peek"]),
        # a Kale notebook's cell
        ("model = Ridge(alpha=1.0).fit(X, y)", ["block:train", "prev:load", "keep-me"]))
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "marks.ipynb")
        problem = page.locator('.jp-mlops-problem:has-text("more than one role")')
        problem.wait_for(timeout=30_000)
        for button in page.locator("button.jp-mlops-role").all():  # JupyterLab's own buttons
            assert "jp-Button" in button.get_attribute("class")

        # an unmarked cell gets the default spelling, a magic line, and the notebook gets the
        # %load_ext cell that the magic needs, before its first code cell
        select_cell(page, 0)
        page.locator('button.jp-mlops-role[data-role="skip"]').click()
        cells = wait_until(lambda: (c := saved_cells(path)) and len(c) == 6 and c,
                           "the %load_ext cell")
        assert source(cells[0]) == "%load_ext jupyter_mlops"
        assert source(cells[1]) == "%%mlops skip\nprint('hello')"
        page.locator('.jp-mlops-notice:has-text("Added %load_ext jupyter_mlops")').wait_for()
        page.locator(".jp-Cell").nth(1).locator('.jp-mlops-badge:text-is("skip")').wait_for()

        # a role change on a magic cell rewrites its first line and drops the conflicting tag;
        # `-` is a step-name character, as in Python
        select_cell(page, 4)
        page.locator('.jp-mlops-hint:has-text("Mark cell 5 (skip, magic)")').wait_for()
        page.locator('input[aria-label="step name"]').fill("peek-2")
        page.locator('button.jp-mlops-role[data-role="step"]').click()
        cell = saved_cell(path, lambda c: source(c).startswith("%%mlops step peek-2\n"),
                          "the rewritten magic line")
        assert source(cell) == "%%mlops step peek-2\nprint(X.shape)"
        assert not [t for t in cell["metadata"].get("tags", []) if t.startswith("mlops:")]
        page.locator(".jp-Cell").nth(4).locator('.jp-mlops-badge:text-is("step peek-2")').wait_for()
        problem.wait_for(state="detached")
        assert page.locator('.jp-mlops-step[data-step="peek-2"]').count() == 1
        # a graph label shows the whole name, or says it in its tooltip
        for node in page.locator(".jp-mlops-graph-node").all():
            assert node.locator("title").text_content().startswith(node.get_attribute("data-step"))
        shot(page, "daily-1-magic-rewritten")

        # clear removes the magic line
        page.locator('button.jp-mlops-role[data-role="none"]').click()
        saved_cell(path, lambda c: source(c) == "print(X.shape)", "the magic line removed")
        page.locator(".jp-Cell").nth(4).locator(".jp-mlops-badge").wait_for(state="detached")
        shot(page, "daily-2-magic-cleared")

        # Kale's tags are replaced, not joined; the model button names the variable assigned
        select_cell(page, 5)
        page.locator('button.jp-mlops-role[data-role="model"]').click()
        cell = saved_cell(path, lambda c: "mlops:model=model" in c["metadata"].get("tags", []),
                          "the model tag")
        assert cell["metadata"]["tags"] == ["keep-me", "mlops:model=model"]
        assert source(cell) == "model = Ridge(alpha=1.0).fit(X, y)"
        load = page.locator('.jp-mlops-step[data-step="load"]')
        load.locator(':text("model (model)")').wait_for(timeout=30_000)
        assert "Ridge" not in load.text_content()
        shot(page, "daily-3-kale-replaced")
    assert page.errors == []


# -- tag-marked cells capture ------------------------------------------------------------------

CELLS = [  # (role's magic arguments or None, code)
    ("setup", "import numpy as np\nimport pandas as pd\nfrom sklearn.linear_model import Ridge"),
    ("params", "alpha = 0.5\nrows = 40"),
    ("step load", "rng = np.random.default_rng(0)\ndf = pd.DataFrame("
                  "{'x': rng.normal(size=rows), 'noise': rng.normal(size=rows)})"),
    ("data df", "df['y'] = 3 * df['x'] + df['noise']"),
    ("step train", "X = df[['x']]\ny = df['y']"),
    ("model model", "model = Ridge(alpha=alpha).fit(X, y)"),
    ("metrics r2 rows_used", "r2 = float(model.score(X, y))\nrows_used = len(df)"),
    # changes df after its capture: a capture that ran late (behind a Run All) would see it
    ("skip", "df = df.head(3)"),
    (None, "print(r2)"),
]


def magic_spelling() -> list[Any]:
    return ["%load_ext jupyter_mlops"] + [
        f"%%mlops {role}\n{code}" if role else code for role, code in CELLS]


def tag_spelling() -> list[Any]:
    cells: list[Any] = []
    for role, code in CELLS:
        if role is None:
            cells.append(code)
            continue
        name, *args = role.split()
        tags = ([f"mlops:{name}={args[0]}"] if name == "step"
                else [f"mlops:{name}={a}" for a in args] or [f"mlops:{name}"])
        cells.append((code, tags))
    return cells


def record(folder: Path) -> dict[str, Any]:
    """The capture record the magics write beside ``nb.ipynb`` (notebook/captures.py)."""
    from jupyter_mlops.notebook.captures import read_record

    return read_record(folder / "nb.ipynb")


def comparable(section: str, entries: dict[str, Any]) -> dict[str, Any]:
    """A record's section without the one thing two captures of the same model differ in:
    the hash of its saved file (a skops zip holds the time it was written)."""
    if section != "models":
        return entries
    return {name: {k: v for k, v in entry.items() if k != "sha256"}
            for name, entry in entries.items()}


def test_tag_marked_cells_capture_as_magic_marked_ones(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    write_notebook(root / "magic" / "nb.ipynb", *magic_spelling())
    tagged = write_notebook(root / "tags" / "nb.ipynb", *tag_spelling())
    sections = ("params", "data", "models", "metrics", "kernel")
    with running_lab(root, tmp_path / "lab", mlops_settings={"markSpelling": "tag"}) as lab:
        open_sidebar(page, lab, "magic/nb.ipynb")
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)
        run_all(page)
        wait_until(lambda: all(record(root / "magic")[s] for s in sections),
                   "the magics' captures")

        open_sidebar(page, lab, "tags/nb.ipynb", workspace="tags")
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)
        run_all(page)
        wait_until(lambda: all(record(root / "tags")[s] for s in sections),
                   "the tag-marked cells' captures")
        magic, tags = record(root / "magic"), record(root / "tags")
        for section in sections:
            assert comparable(section, tags[section]) == comparable(section, magic[section]), \
                section
        [data] = tags["data"].values()
        assert data["profile"]["rows"] == 40  # captured right behind its cell, not after
        assert set(tags["metrics"]) == {"r2", "rows_used"} and set(tags["models"]) == {"model"}

        # the panel shows the captures, and no longer asks for %load_ext
        page.locator('.jp-mlops-captured:has-text("model model")').wait_for(timeout=30_000)
        page.locator('.jp-mlops-captured:has-text("metric r2")').wait_for()
        assert "%load_ext" not in page.locator(".jp-mlops-sidebar").text_content()
        assert page.locator(".jp-mlops-capture-problem").count() == 0
        shot(page, "daily-4-tags-captured")

        # this lab's user setting spells new marks as tags
        select_cell(page, len(CELLS) - 1)
        page.locator('button.jp-mlops-role[data-role="skip"]').click()
        cell = saved_cell(tagged, lambda c: source(c) == "print(r2)"
                          and c["metadata"].get("tags") == ["mlops:skip"], "the new tag")
        assert cell is not None
    assert page.errors == []


# -- badges follow their cells -----------------------------------------------------------------

def copy_diabetes(root: Path) -> Path:
    shutil.copytree(EXAMPLES / "diabetes", root / "diabetes",
                    ignore=shutil.ignore_patterns("*_pipeline", "*.mlops*"))
    return root / "diabetes" / "diabetes.ipynb"


def test_badges_stay_on_their_cells_after_an_unsaved_insert(tmp_path: Path,
                                                           browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    path = copy_diabetes(root)
    saved = path.read_text()
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "diabetes/diabetes.ipynb")
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)
        page.locator(".jp-Cell").nth(7).locator('.jp-mlops-badge:text-is("step load")').wait_for()
        before = badges(page)
        assert len(before) == 27 and before[7] == "step load"
        assert before[25] == "metrics · evaluate"  # the last cells too, attached or not
        load = page.locator('.jp-mlops-step[data-step="load"] .jp-mlops-cells button').first
        assert load.text_content() == "[8]"

        # a cell above the first, run and not saved
        select_cell(page, 0)
        command(page, "notebook:insert-cell-above")
        wait_until(lambda: cell_count(page) == len(before) + 1, "the inserted cell")
        page.locator(".jp-Notebook .jp-Cell").first.locator(".cm-content").fill("answer = 42")
        wait_for_kernel(page)
        count = analyses(page)
        command(page, "notebook:run-cell")
        page.locator(".jp-Notebook .jp-Cell").first.locator(
            '.jp-InputArea-prompt:text-matches("\\\\[\\\\d+\\\\]")').wait_for(timeout=120_000)
        wait_for_analysis_after(page, count)  # the run made the panel analyse the saved file

        assert path.read_text() == saved  # not saved: the analysis numbers the old cells
        assert badges(page) == ["", *before]
        assert load.text_content() == "[9]"
        load.click()
        active = wait_until(lambda: page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.activeCellIndex") == 8 and 8,
            "the link's cell to be active")
        assert badges(page)[active] == "step load"
        shot(page, "daily-5-badges-after-insert")
    assert page.errors == []


# -- the dark theme ----------------------------------------------------------------------------

CONTRAST_JS = """
els => {
  const parse = text => {
    const m = /rgba?\\(([^)]+)\\)/.exec(text || '');
    if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const over = (top, bottom) => ({
    r: top.r * top.a + bottom.r * (1 - top.a), g: top.g * top.a + bottom.g * (1 - top.a),
    b: top.b * top.a + bottom.b * (1 - top.a), a: 1 });
  const backdrop = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.a > 0) { layers.push(c); if (c.a >= 1) break; }
    }
    return layers.reverse().reduce((bg, c) => over(c, bg), { r: 255, g: 255, b: 255, a: 1 });
  };
  const lum = c => {
    const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
  };
  const ratio = (a, b) => {
    const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  return els.map(el => {
    if (el instanceof SVGElement) {  // a graph node: its label's fill on its box's fill
      const text = el.querySelector('text'), rect = el.querySelector('rect');
      const bg = over(parse(getComputedStyle(rect).fill), backdrop(el.closest('svg')));
      return [text.textContent, ratio(over(parse(getComputedStyle(text).fill), bg), bg)];
    }
    const bg = backdrop(el);
    return [el.textContent, ratio(over(parse(getComputedStyle(el).color), bg), bg)];
  });
}
"""

STATUSES = ["idle", "running", "done", "failed", "skipped"]


def contrasts(page: Any) -> list[tuple[str, float]]:
    """(text, contrast) of every badge, and of every graph label in each run status."""
    found = page.locator(".jp-mlops-badge").evaluate_all(CONTRAST_JS)
    nodes = page.locator(".jp-mlops-graph-node")
    for status in STATUSES:
        nodes.evaluate_all(
            "(els, s) => els.forEach(e => e.setAttribute('class', "
            "`jp-mlops-graph-node jp-mlops-status-${s}`))", status)
        found += [(f"{text} ({status})", value) for text, value in nodes.evaluate_all(CONTRAST_JS)]
    return [(text, value) for text, value in found]


def test_badges_and_graph_labels_are_readable_in_light_and_dark(tmp_path: Path,
                                                               browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    copy_diabetes(root)
    # a problem badge too
    write_notebook(root / "broken.ipynb", ("import math", ["mlops:setup"]),
                   ("y = math.sqrt(x) + 1", ["mlops:step=a"]))
    with running_lab(root, tmp_path / "lab") as lab:
        for theme, light in (("JupyterLab Light", "true"), ("JupyterLab Dark", "false")):
            if theme != "JupyterLab Light":
                command(page, "apputils:change-theme", {"theme": theme})
                page.wait_for_function(
                    "light => document.body.dataset.jpThemeLight === light && "
                    "getComputedStyle(document.body).getPropertyValue('--jp-layout-color1')"
                    ".trim() !== 'white'", arg=light, timeout=30_000)
            for notebook in ("diabetes/diabetes.ipynb", "broken.ipynb"):
                open_sidebar(page, lab, notebook, workspace=f"{Path(notebook).stem}-{light}")
                page.locator(".jp-mlops-graph-node").first.wait_for(timeout=30_000)
                page.locator(".jp-mlops-badge").first.wait_for()
                assert page.evaluate("document.body.dataset.jpThemeLight") == light
                shot(page, f"daily-6-theme-{'light' if light == 'true' else 'dark'}-"
                           f"{Path(notebook).stem}")
                found = contrasts(page)
                assert len(found) > 5
                poor = [(text, round(value, 2)) for text, value in found
                        if value < MIN_CONTRAST]
                assert not poor, f"{theme}: {poor}"
    assert page.errors == []


# -- JupyterLab conventions --------------------------------------------------------------------

#: Resolves once the notebook has had no node added or removed for 0.5 s (10 s at most).
QUIET = """() => new Promise(resolve => {
  const notebook = document.querySelector('.jp-Notebook');
  let timer;
  const observer = new MutationObserver(() => {
    clearTimeout(timer);
    timer = setTimeout(done, 500);
  });
  const cap = setTimeout(done, 10000);
  function done() { observer.disconnect(); clearTimeout(cap); clearTimeout(timer); resolve(); }
  observer.observe(notebook, {subtree: true, childList: true});
  timer = setTimeout(done, 500);
})"""


def test_palette_and_cell_context_menu_have_the_commands(tmp_path: Path,
                                                        browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    path = copy_diabetes(root)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "diabetes/diabetes.ipynb")
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)

        # the palette: a mark command for each role (enabled, and so shown, on a code cell),
        # export, run
        select_cell(page, 3)
        # the modal palette closes when it loses the focus: let the click's focus settle first,
        # and the notebook's late redrawing (the inline controls drawn again when the
        # analysis arrives) end: 0.5 s without a node added or removed, 10 s at most
        page.wait_for_function("() => !!document.activeElement?.closest('.jp-Notebook')")
        page.evaluate(QUIET)
        command(page, "apputils:activate-command-palette")
        search = page.locator(".lm-CommandPalette-input")
        search.wait_for()
        search.fill("jupyter-mlops")
        items = page.locator(".lm-CommandPalette-item")
        items.first.wait_for()
        labels = set(items.locator(".lm-CommandPalette-itemLabel").all_text_contents())
        for label in ("Mark cell as setup", "Mark cell as params", "Mark cell as step…",
                      "Mark cell as data", "Mark cell as model", "Mark cell as metrics",
                      "Mark cell as skip", "Export pipeline", "Run pipeline"):
            assert label in labels, labels
        shot(page, "daily-7-palette")
        page.keyboard.press("Escape")

        # the cell context menu: "Mark cell as" > a role, on the cell right-clicked
        cell = page.locator(".jp-Notebook .jp-Cell").nth(9)  # `%%mlops skip` print(...)
        cell.locator(".jp-InputPrompt").click()
        cell.locator(".jp-InputPrompt").click(button="right")
        menu = page.locator(".lm-Menu")
        menu.locator('.lm-Menu-itemLabel:text-is("Mark cell as")').hover()
        sub = page.locator(".lm-Menu.jp-mlops-mark-menu")
        sub.wait_for()
        roles = sub.locator(".lm-Menu-itemLabel").all_text_contents()
        assert roles[:7] == ["setup", "params", "step…", "data", "model", "metrics", "skip"]
        assert roles[-1] == "clear"
        assert page.locator('.lm-Menu-itemLabel:text-is("Export pipeline")').count() == 1
        assert page.locator('.lm-Menu-itemLabel:text-is("Run pipeline")').count() == 1
        shot(page, "daily-8-context-menu")
        sub.locator('.lm-Menu-itemLabel:text-is("clear")').click()
        saved_cell(path, lambda c: source(c) == 'print(diabetes.DESCR[:1200])',
                   "the cleared cell")

        # export from the context menu
        cell.locator(".jp-InputPrompt").click(button="right")
        page.locator('.lm-Menu-itemLabel:text-is("Export pipeline")').click()
        page.locator('.jp-mlops-notice:has-text("Exported 5 steps")').wait_for(timeout=60_000)
        assert (root / "diabetes/diabetes_pipeline/pipeline.yaml").is_file()
    assert page.errors == []


def test_the_panel_survives_a_reload_and_follows_a_rename(tmp_path: Path,
                                                         browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    copy_diabetes(root)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "diabetes/diabetes.ipynb")
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)
        # the layout restorer keeps the panel open (the workspace is saved as it changes)
        workspace = f"{lab.url}/lab/api/workspaces/default?token={lab.token}"

        def left_area() -> dict[str, Any]:
            saved = page.evaluate("async url => (await fetch(url)).json()", workspace)
            return saved["data"].get("layout-restorer:data", {}).get("left", {})

        wait_until(lambda: left_area().get("current") == "jupyter-mlops-sidebar",
                   "the workspace to hold the open panel")
        # reloaded at /lab: the workspace alone brings back the notebook and the panel (a
        # /lab/tree/PATH address would open PATH once more, late, after the rename below)
        page.goto(f"{lab.url}/lab?token={lab.token}")
        page.locator(".jp-mlops-sidebar .jp-mlops-step").first.wait_for(timeout=60_000)
        page.evaluate("() => window.jupyterapp.restored.then(() => true)")
        assert page.locator(".jp-mlops-sidebar").is_visible()
        shot(page, "daily-9-reloaded")

        # a rename (File > Rename Notebook…) is followed at once, without a save
        rename = page.evaluate("() => { window.jupyterapp.commands.execute('docmanager:rename');"
                               " return true; }")
        assert rename
        name = page.locator(".jp-Dialog input")
        name.fill("progression.ipynb")
        page.locator(".jp-Dialog .jp-mod-accept").click()
        page.locator('.jp-mlops-title:has-text("Pipeline progression")').wait_for(timeout=30_000)

        # no notebook: the panel says what it is for, and starts one without the launcher
        # (closing a notebook whose kernel still starts makes JupyterLab report a canceled
        # request of its own)
        wait_for_kernel(page)
        command(page, "docmanager:save")  # (the kernel's metadata made it dirty)
        command(page, "application:close-all")
        empty = page.locator(".jp-mlops-empty-state")
        empty.wait_for(timeout=30_000)
        assert "Open a notebook to see its pipeline" in empty.text_content()
        shot(page, "daily-10-empty")
        empty.locator("button.jp-mlops-new-notebook").click()
        page.locator('.jp-mlops-title:has-text("Pipeline")').wait_for(timeout=30_000)
        assert page.locator(".jp-mlops-empty-state").count() == 0
    assert page.errors == []


def test_missing_server_extension_says_how_to_enable_it_and_retries(tmp_path: Path,
                                                                    browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    copy_diabetes(root)
    with running_lab(root, tmp_path / "lab") as lab:
        # the routes answer as a server without the extension does: an HTML 404
        missing = {"on": True}

        def route(handled: Any) -> None:
            if missing["on"]:
                handled.fulfill(status=404, content_type="text/html", body="<h1>404</h1>")
            else:
                handled.continue_()

        page.route("**/mlops/**", route)
        open_sidebar(page, lab, "diabetes/diabetes.ipynb")
        message = page.locator(".jp-mlops-missing")
        message.wait_for(timeout=30_000)
        assert "jupyter server extension enable jupyter_mlops" in message.text_content()
        assert "pip install" not in message.text_content()
        retry = message.locator("button.jp-mlops-retry")
        assert "jp-Button" in retry.get_attribute("class")
        shot(page, "daily-11-server-missing")

        with page.expect_response(lambda response: "/mlops/analyze" in response.url):
            retry.click()  # still missing: the message stays
        page.locator(".jp-mlops-missing button.jp-mlops-retry:enabled").wait_for()
        missing["on"] = False
        page.locator(".jp-mlops-missing button.jp-mlops-retry:enabled").click()
        page.locator(".jp-mlops-step").first.wait_for(timeout=30_000)
        assert page.locator(".jp-mlops-missing").count() == 0
        shot(page, "daily-12-retried")
    assert page.errors == []
