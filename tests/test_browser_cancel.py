"""Cancel from the sidebar in a real browser: a run cancelled while its middle step sleeps
ends `cancelled` in the panel, in `run.json` and in the run store, with the unfinished steps
cancelled too, and a restarted lab shows it so in the history. (Cancels at other moments of
a run are in test_cancel.py, against the server's routes.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import test_browser
from conftest import write_notebook
from labserver import running_lab
from test_browser import open_sidebar, shot

from jupyter_mlops.run.store import RunStore, default_store

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser


def test_cancel_a_run_from_the_panel_and_find_it_cancelled_after_a_restart(
        tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    write_notebook(
        root / "slow.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops step load\nx = 1",
        "%%mlops step wait\nimport pathlib, time\npathlib.Path('SLEEPING').write_text('1')\n"
        "for _ in range(1200):\n    time.sleep(0.1)\ny = x + 1",
        "%%mlops step last\nz = y + 1")
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "slow.ipynb")
        page.locator(".jp-mlops-step").first.wait_for(timeout=60_000)
        page.locator("button.jp-mlops-run").click()
        deadline = time.monotonic() + 120
        while not (root / "SLEEPING").is_file():  # the step is in its long cell now
            assert time.monotonic() < deadline, "the step `wait` never started"
            time.sleep(0.1)
        progress = page.locator(".jp-mlops-progress")
        progress.locator('li:has-text("wait: running")').wait_for(timeout=30_000)
        run_id = progress.get_attribute("data-run")
        shot(page, "cancel-1-running")
        page.locator("button.jp-mlops-cancel").click()
        page.locator('.jp-mlops-progress[data-status="cancelled"]').wait_for(timeout=60_000)
        steps = page.locator(".jp-mlops-progress li").all_text_contents()
        assert [s.split(":")[0] + ":" + s.split(":")[1].split()[0] for s in steps] == [
            "load:done", "wait:cancelled", "last:cancelled"], steps
        assert page.locator('button.jp-mlops-cancel').count() == 0
        # a cancel is not announced as a success
        assert page.locator('.jp-mlops-notice[data-kind="success"]').count() == 0
        shot(page, "cancel-2-cancelled")

    pipeline = root / "slow_pipeline"
    store = RunStore(default_store(pipeline))
    try:
        run = store.run(run_id)
    finally:
        store.close()
    assert run.status == "cancelled"
    assert [(s.step, s.status) for s in run.steps] == [
        ("load", "done"), ("wait", "cancelled"), ("last", "cancelled")]
    folder = Path(run.folder)
    record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "cancelled"
    assert [s["status"] for s in record["steps"]] == ["done", "cancelled", "cancelled"]

    # a restarted lab reads it the same
    with running_lab(root, tmp_path / "lab2") as lab:
        open_sidebar(page, lab, "slow.ipynb")
        row = page.locator(f'.jp-mlops-history-row[data-run="{run_id}"]')
        row.wait_for(timeout=60_000)
        assert row.get_attribute("data-status") == "cancelled"
        shot(page, "cancel-3-after-restart")
