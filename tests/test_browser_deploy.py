"""Deploy from the panel (issue "sidebar as a daily tool", item 5): the exported pipeline
written as an Airflow DAG and as a Kubeflow Pipelines YAML from the Deploy section, the
written file opened from its link, a refused option said in one line. Same browser and lab as
test_browser.py; screenshots in ``test-artifacts/browser/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import test_browser
import yaml
from labserver import running_lab
from test_browser import open_sidebar, shot
from test_browser_daily import wait_until
from test_lab_deploy import exported

pytestmark = pytest.mark.kernel
#: The headless Chromium page of test_browser.py (a fixture; it skips without Chromium).
browser = test_browser.browser


def test_deploy_to_airflow_and_kfp_from_the_panel(tmp_path: Path, browser: Any) -> None:
    page = browser
    root = tmp_path / "root"
    exported(root)
    with running_lab(root, tmp_path / "lab") as lab:
        open_sidebar(page, lab, "work/small.ipynb")
        form = page.locator(".jp-mlops-deploy-form")
        form.wait_for(timeout=30_000)
        button = form.locator("button.jp-mlops-deploy")
        assert "jp-Button" in button.get_attribute("class")
        assert form.locator('input[aria-label="deploy output"]').input_value() == "work/dags"

        # a refused option: the server's one line beside the form, nothing written
        form.locator('input[aria-label="deploy retries"]').fill("-1")
        button.click()
        error = form.locator(".jp-mlops-deploy-error")
        error.wait_for(timeout=30_000)
        assert "--retries needs a whole number" in error.text_content()
        assert not (root / "work" / "dags").exists()
        form.scroll_into_view_if_needed()
        shot(page, "deploy-1-refused")

        # Airflow: the DAG is written, said as the CLI says it, and opens from its link
        form.locator('input[aria-label="deploy retries"]').fill("2")
        button.click()
        link = form.locator("button.jp-mlops-deployed-file")
        link.wait_for(timeout=60_000)
        assert link.text_content() == "work/dags/mlops_small.py"
        lines = form.locator(".jp-mlops-deployed-lines")
        assert "Wrote work/dags/mlops_small.py" in lines.text_content()
        error.wait_for(state="detached")
        dag = root / "work" / "dags" / "mlops_small.py"
        compile(wait_until(lambda: dag.is_file() and dag.read_text(), "the DAG"), str(dag), "exec")
        assert "RETRIES = 2" in dag.read_text()
        form.scroll_into_view_if_needed()
        shot(page, "deploy-2-airflow")
        link.click()
        page.locator('.lm-TabBar-tab.lm-mod-current:has-text("mlops_small.py")').wait_for(
            timeout=30_000)
        page.locator('.jp-FileEditor .cm-content:has-text("RETRIES = 2")').wait_for()
        shot(page, "deploy-3-dag-opened")

        # Kubeflow Pipelines: its own output and image
        page.locator('.lm-TabBar-tab:has-text("small.ipynb")').first.click()
        form.locator('select[aria-label="deploy target"]').select_option("kfp")
        output = form.locator('input[aria-label="deploy output"]')
        assert output.input_value() == "work/kfp/pipeline.yaml"
        form.locator('input[aria-label="deploy image"]').fill("registry.example/small:1")
        form.locator("button.jp-mlops-deploy").click()
        link = form.locator('button.jp-mlops-deployed-file:text-is("work/kfp/pipeline.yaml")')
        link.wait_for(timeout=120_000)
        compiled = yaml.safe_load((root / "work" / "kfp" / "pipeline.yaml").read_text())
        assert "registry.example/small:1" in str(compiled)
        assert "Wrote work/kfp/Dockerfile" in lines.text_content()
        # within the panel's default width: nothing scrolls sideways
        assert page.locator(".jp-mlops-sidebar").evaluate("e => e.scrollWidth <= e.clientWidth + 1")
        form.scroll_into_view_if_needed()
        shot(page, "deploy-4-kfp")
    assert page.errors == []
