"""The sidebar in a real browser: Debian's Chromium, driven by Playwright, against a real
``jupyter lab`` with the installed extension. Screenshots go to ``test-artifacts/browser/``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES, REPO
from labserver import CHROMIUM, CHROMIUM_ARGS, Lab, running_lab

pytestmark = pytest.mark.kernel
SHOTS = REPO / "test-artifacts" / "browser"

if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)", allow_module_level=True)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium page; every page error is collected into ``page.errors``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 900})
        page = context.pages[0] if context.pages else context.new_page()
        page.errors = []  # type: ignore[attr-defined]
        page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore
        try:
            yield page
        finally:
            context.close()


def open_sidebar(page: Any, lab: Lab, notebook: str, workspace: str | None = None) -> None:
    """Open ``notebook`` in the lab and the jupyter-mlops panel beside it; in a workspace of
    its own when given (a fresh page with that notebook alone)."""
    where = f"workspaces/{workspace}/" if workspace else ""
    page.goto(f"{lab.url}/lab/{where}tree/{notebook}?token={lab.token}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
    # the layout restorer may have opened the panel already (a second notebook, a reload)
    page.evaluate("() => window.jupyterapp.restored.then(() => true)")
    if not page.locator(".jp-mlops-sidebar").is_visible():
        page.locator('.lm-TabBar-tab[title="jupyter-mlops pipeline"]').click()
    page.locator(".jp-mlops-sidebar").wait_for()


def saved_cell(path: Path, index: int) -> dict[str, Any]:
    """Cell ``index`` as saved; empty while the lab is halfway through writing the file."""
    try:
        cell = json.loads(path.read_text())["cells"][index]
    except ValueError:  # the lab writes the file in place: read it again
        return {"source": "", "metadata": {}}
    source = cell["source"]
    return {**cell, "source": source if isinstance(source, str) else "".join(source)}


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def test_mark_export_run_from_the_sidebar(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    shutil.copytree(EXAMPLES / "diabetes", root / "diabetes",
                    ignore=shutil.ignore_patterns("*_pipeline", "*.mlops*"))
    path = root / "diabetes" / "diabetes.ipynb"
    # The example marks every cell by its first line; free cell 10 (a print) of its
    # `%%mlops skip` so that the sidebar has an unmarked cell to mark.
    nb = json.loads(path.read_text())
    assert nb["cells"][9]["source"][0] == "%%mlops skip\n"
    nb["cells"][9]["source"] = nb["cells"][9]["source"][1:]
    path.write_text(json.dumps(nb, indent=1))

    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "diabetes/diabetes.ipynb")
        steps = page.locator(".jp-mlops-step")
        steps.first.wait_for(timeout=30_000)
        assert steps.evaluate_all("els => els.map(e => e.dataset.step)") == [
            "load", "features", "split", "train", "evaluate"]
        assert page.locator(".jp-mlops-graph .jp-mlops-graph-node").count() == 5
        badge = page.locator(".jp-Cell").nth(7).locator(".jp-mlops-badge")
        assert badge.text_content() == "step load"
        shot(page, "1-opened")

        # mark cell 10 as skip from the sidebar: in a notebook of magics, by default, a magic
        # line (the user's setting could make it a tag), saved in the file
        page.locator(".jp-Cell").nth(9).locator(".jp-InputPrompt").click()
        page.locator('.jp-mlops-hint:has-text("Mark cell 10 as")').wait_for()
        page.locator('button.jp-mlops-role[data-role="skip"]').click()
        deadline = time.monotonic() + 20
        while not saved_cell(path, 9)["source"].startswith("%%mlops skip\nprint("):
            assert time.monotonic() < deadline, "the sidebar's mark never reached the file"
            time.sleep(0.2)
        assert "tags" not in saved_cell(path, 9)["metadata"]
        page.locator(".jp-Cell").nth(9).locator('.jp-mlops-badge:text-is("skip")').wait_for()
        shot(page, "2-marked")

        # the login cookie alone cannot export (as a forged cross-site form would): XSRF
        forged = page.request.post(f"{lab.url}/mlops/export",
                                   data=json.dumps({"path": "diabetes/diabetes.ipynb"}),
                                   headers={"Content-Type": "application/json"})
        assert forged.status == 403
        assert not (root / "diabetes/diabetes_pipeline").exists()

        # export, then run with a parameter changed
        page.locator("button.jp-mlops-export").click()
        page.locator('.jp-mlops-notice:has-text("Exported 5 steps")').wait_for(timeout=60_000)
        assert (root / "diabetes/diabetes_pipeline/pipeline.yaml").is_file()
        page.locator('input[aria-label="parameter n_estimators"]').fill("60")
        page.locator("button.jp-mlops-run").click()
        page.locator(".jp-mlops-progress").wait_for(timeout=60_000)
        note = page.locator(".jp-mlops-run-note").text_content()
        assert "Run saves the notebook and exports" in note
        shot(page, "3-running")
        page.locator('.jp-mlops-progress[data-status="succeeded"]').wait_for(timeout=300_000)
        row = page.locator('.jp-mlops-history-row[data-status="succeeded"]').first
        row.wait_for(timeout=30_000)
        page.locator('.jp-mlops-notice[data-kind="success"]:has-text("succeeded")').wait_for()
        # the history fits the panel's default width: nothing clipped, nothing scrolls
        # sideways, the run id on one line (cut, whole in its tooltip)
        history = page.locator(".jp-mlops-history")
        assert history.evaluate("t => t.scrollWidth <= t.clientWidth + 1")
        assert page.locator(".jp-mlops-sidebar").evaluate("s => s.scrollWidth <= s.clientWidth + 1")
        run_id = row.locator(".jp-mlops-run-id button")
        assert run_id.evaluate("b => b.getClientRects().length === 1 && "
                               "b.offsetHeight < 2 * parseFloat(getComputedStyle(b).fontSize)")
        assert row.get_attribute("data-run") in run_id.get_attribute("title")
        row.locator(".jp-mlops-history-more").scroll_into_view_if_needed()
        shot(page, "4-succeeded")

        from jupyter_mlops.run.store import RunStore, default_store

        store = RunStore(default_store(root / "diabetes/diabetes_pipeline"))
        run = store.runs(1)[0]
        store.close()
        assert run.status == "succeeded" and run.started_by == "jupyterlab"
        assert run.parameters["n_estimators"] == 60  # typed, not "60"
        metrics = row.locator(".jp-mlops-metrics").text_content()
        assert set(run.metrics) == {"rmse", "mae", "r2"}
        for name, value in run.metrics.items():
            assert f"{name}={float(value):.4g}" in metrics, metrics

        # the run's executed notebooks open from the history; the panel stays on the source
        # notebook (a step notebook is not one to analyse)
        analysed = int(page.locator(".jp-mlops-sidebar").get_attribute("data-analyses"))
        run_id.click()
        page.locator('.jp-mlops-notebooks button:text-is("train")').click()
        page.locator('.lm-TabBar-tab.lm-mod-current:has-text("04_train.ipynb")').wait_for(
            timeout=30_000)
        page.locator(".jp-Notebook:visible .jp-Cell").first.wait_for(timeout=30_000)
        page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget; "
                               "return w?.context?.path?.endsWith('04_train.ipynb') "
                               "&& w.context.isReady; }")
        assert page.locator(".jp-mlops-title").text_content().startswith("Pipeline diabetes")
        assert page.locator(".jp-mlops-step").count() == 5
        assert page.locator(".jp-mlops-problem").count() == 0
        assert int(page.locator(".jp-mlops-sidebar").get_attribute("data-analyses")) == analysed
        shot(page, "5-notebook")
    assert page.errors == []


def test_sidebar_says_when_the_server_extension_is_missing(tmp_path: Path,
                                                          browser: Any) -> None:
    root = tmp_path / "root"
    shutil.copytree(EXAMPLES / "diabetes", root / "diabetes",
                    ignore=shutil.ignore_patterns("*_pipeline", "*.mlops*"))
    config = tmp_path / "config"
    config.mkdir()
    # a user config that turns the server extension off, as a broken install would leave it
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"jupyter_mlops": False}}}))
    with running_lab(root, tmp_path / "lab", env={"JUPYTER_CONFIG_DIR": str(config)}) as lab:
        open_sidebar(browser, lab, "diabetes/diabetes.ipynb")
        missing = browser.locator(".jp-mlops-missing")
        missing.wait_for(timeout=30_000)
        assert "server extension is not answering" in missing.text_content()
        assert "jupyter server extension enable jupyter_mlops" in missing.text_content()
        assert missing.locator("button.jp-mlops-retry").is_enabled()
        shot(browser, "6-server-missing")


def test_problems_sit_next_to_their_cells(tmp_path: Path, browser: Any) -> None:
    from conftest import write_notebook

    root = tmp_path / "root"
    write_notebook(root / "broken.ipynb", ("import math", ["mlops:setup"]),
                   ("y = math.sqrt(x) + 1", ["mlops:step=a"]), ("z = y * 2", []))
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(browser, lab, "broken.ipynb")
        problem = browser.locator(".jp-mlops-problem").first
        problem.wait_for(timeout=30_000)
        assert "`x`" in problem.text_content()
        badge = browser.locator(".jp-Cell").nth(1).locator(".jp-mlops-badge")
        assert badge.text_content() == "step a ⚠"
        assert "`x`" in badge.get_attribute("title")
        assert "jp-mlops-badge-problem" in badge.get_attribute("class")
        browser.locator(".jp-Cell").nth(2).locator(".jp-InputPrompt").click()
        problem.locator('button:text-is("cell 2")').click()
        browser.locator(".jp-Cell.jp-mod-active").first.wait_for()
        active = browser.locator(".jp-Cell").evaluate_all(
            "cells => cells.findIndex(c => c.classList.contains('jp-mod-active'))")
        assert active == 1
        # Export refuses, in one line that names the variable, next to a link to the cell
        browser.locator("button.jp-mlops-export").click()
        refused = browser.locator(".jp-mlops-request-error")
        refused.wait_for(timeout=30_000)
        assert "`x`" in refused.text_content() and "cell 2" in refused.text_content()
        assert not (root / "broken_pipeline").exists()
        shot(browser, "7-problems")
    assert browser.errors == []


def test_schedule_pause_and_delete_a_job_from_the_sidebar(tmp_path: Path, browser: Any) -> None:
    from conftest import run_cli, write_notebook

    from jupyter_mlops.jobs.api import list_jobs

    page = browser
    root = tmp_path / "root"
    write_notebook(root / "small.ipynb", ("scale = 2", ["mlops:params"]),
                   ("values = [i * scale for i in range(10)]", ["mlops:step=make"]),
                   ("total = float(sum(values))", ["mlops:step=total"]),
                   ("score = total / 100", ["mlops:metrics"]))
    pipeline = root / "small_pipeline"
    # exported, with a job `nightly` that has run once (as `jupyter mlops jobs run` runs it)
    for args in (("export", str(root / "small.ipynb")),
                 ("schedule", str(pipeline), "--cron", "0 2 * * *", "--name", "nightly"),
                 ("jobs", "run", "nightly", "-C", str(pipeline))):
        done = run_cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr
    # no scheduler in this lab: the sidebar says how to get one
    with running_lab(root, tmp_path / "lab", env={"JUPYTER_MLOPS_SCHEDULER": "off"}) as lab:
        open_sidebar(page, lab, "small.ipynb")
        form = page.locator(".jp-mlops-schedule-form")
        form.wait_for(timeout=30_000)
        nightly = page.locator('.jp-mlops-job[data-job="nightly"]')
        nightly.wait_for(timeout=30_000)
        assert "cron 0 2 * * * (UTC)" in nightly.text_content()
        assert nightly.locator('.jp-mlops-slot[data-outcome="succeeded"]').count() == 1
        note = page.locator(".jp-mlops-no-scheduler")
        assert "JUPYTER_MLOPS_SCHEDULER is off" in note.text_content()
        assert "jupyter mlops scheduler" in note.text_content()
        # the run the job started is marked in the history
        label = page.locator(".jp-mlops-history-row .jp-mlops-job-label")
        label.wait_for(timeout=30_000)
        assert label.get_attribute("title") == "started by job nightly"
        assert "nightly" in label.text_content()

        # an interval job with a parameter changed from its default
        scale = form.locator('input[aria-label="schedule parameter scale"]')
        assert scale.input_value() == "2"
        scale.fill("5")
        form.locator('select[aria-label="schedule kind"]').select_option("every")
        form.locator('input[aria-label="interval"]').fill("1h")
        form.locator('input[aria-label="job name"]').fill("hourly")
        form.locator("button.jp-mlops-schedule").click()
        hourly = page.locator('.jp-mlops-job[data-job="hourly"]')
        hourly.wait_for(timeout=30_000)
        assert "every 1h" in hourly.text_content() and "scale=5" in hourly.text_content()
        assert hourly.get_attribute("data-state") == "active"
        following = hourly.locator(".jp-mlops-job-next")
        next_run = float(following.get_attribute("data-next"))
        assert abs(next_run - (time.time() + 3600)) < 120, next_run
        local = page.evaluate(f"new Date({next_run} * 1000).toLocaleString()")
        assert following.text_content() == f"next run {local}"
        [job] = [j for j in list_jobs(pipeline) if j["name"] == "hourly"]
        assert job["parameters"] == {"scale": 5} and job["schedule"]["every"] == 3600
        hourly.scroll_into_view_if_needed()
        shot(page, "8-scheduled")

        hourly.locator("button.jp-mlops-job-pause").click()
        page.locator('.jp-mlops-job[data-job="hourly"][data-state="paused"]').wait_for()
        assert hourly.locator(".jp-mlops-job-state").text_content() == "paused"
        assert following.text_content() == "no next run"
        assert hourly.locator("button.jp-mlops-job-resume").is_visible()
        [job] = [j for j in list_jobs(pipeline) if j["name"] == "hourly"]
        assert job["state"] == "paused"

        hourly.locator("button.jp-mlops-job-delete").click()
        hourly.wait_for(state="detached")
        assert [j["name"] for j in list_jobs(pipeline)] == ["nightly"]

        # a bad cron: the server's one line beside the form, and no job made
        form.locator('select[aria-label="schedule kind"]').select_option("cron")
        zone = form.locator('input[aria-label="time zone"]')
        assert zone.input_value() == page.evaluate(
            "Intl.DateTimeFormat().resolvedOptions().timeZone")
        form.locator('input[aria-label="cron"]').fill("0 25 * * *")
        form.locator("button.jp-mlops-schedule").click()
        refused = form.locator(".jp-mlops-schedule-error")
        refused.wait_for(timeout=30_000)
        assert "the hour field `25` is not valid" in refused.text_content()
        assert [j["name"] for j in list_jobs(pipeline)] == ["nightly"]
        assert page.locator(".jp-mlops-job").count() == 1
        refused.scroll_into_view_if_needed()
        shot(page, "9-schedule-refused")
    assert page.errors == []
