"""Files jupyter-mlops writes get the mode the user's umask gives any file, not 0o600.

Other users read what a pipeline writes: an Airflow worker the pipeline folder, a web server
the reports, a container's non-root user the files copied into its image."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_notebook

from jupyter_mlops.pipeline.export import export
from jupyter_mlops.runtime._files import atomic_write
from jupyter_mlops.runtime.artifacts import save


@pytest.fixture(params=[0o022, 0o027])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_and_folders_follow_the_umask(tmp_path: Path, umask: int) -> None:
    atomic_write(tmp_path / "plain.txt", "x")
    assert _mode(tmp_path / "plain.txt") == 0o666 & ~umask

    manifest = save([1, 2, 3], "values", tmp_path / "artifacts")
    assert _mode(tmp_path / "artifacts" / manifest["file"]) == 0o666 & ~umask
    assert _mode(tmp_path / "artifacts" / "values.json") == 0o666 & ~umask

    notebook = write_notebook(tmp_path / "nb.ipynb", "%%mlops step a\nx = 1",
                              "%%mlops step b\ny = x + 1")
    folder = export(notebook).folder
    assert _mode(folder / "pipeline.yaml") == 0o666 & ~umask
    assert _mode(folder / "steps") == 0o777 & ~umask
    for step in (folder / "steps").iterdir():
        assert _mode(step) == 0o666 & ~umask, step


def test_the_monitoring_page_shows_thresholds_as_text() -> None:
    """Thresholds come from pipeline.yaml, which anyone with the folder may edit: markup in
    them is shown, never run."""
    import pandas as pd

    from jupyter_mlops.serving.monitorhtml import render_html

    attack = "<script>alert(1)</script>"
    report = {
        "pipeline": "p<b>", "healthy": False, "rows": 3, "data": "new.csv", "run_id": "r1",
        "reference": {"variable": "X", "step": "split"}, "reasons": ["metric beyond"],
        "metrics": [{"name": "acc", "value": 0.5, "run_value": 0.9, "min": attack,
                     "max": None, "ok": False}],
        "drift": {"drifted": [], "columns": {}, "share": 0.0, "skipped": {}},
        "profile": {"columns": []}, "missing": [],
    }
    page = render_html(report, pd.DataFrame({"a": [1, 2, 3]}))
    assert attack not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
