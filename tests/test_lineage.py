"""Looking back with real runs: lineage of a variable, and the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import write_notebook

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from conftest import run_cli

    root = tmp_path_factory.mktemp("lineage")
    (root / "data.csv").write_text("x\n1\n2\n3\n")
    write_notebook(root / "l.ipynb", "%%mlops params\nscale = 2",
                   "%%mlops step load\nimport pandas as pd\ndf = pd.read_csv('data.csv')",
                   "%%mlops step fit\ntotal = float(df['x'].sum()) * scale",
                   "%mlops metrics total")
    assert run_cli("export", str(root / "l.ipynb")).returncode == 0
    folder = root / "l_pipeline"
    for scale in ("2", "3"):
        assert run_cli("run", str(folder), "-p", f"scale={scale}").returncode == 0
    runs = json.loads(run_cli("runs", "-C", str(folder), "--json").stdout)
    return folder, [r["run_id"] for r in runs]


def test_lineage_walks_back_to_the_data_file(pipeline, cli) -> None:
    folder, (latest, first) = pipeline
    text = cli("lineage", f"{latest}:total", "-C", str(folder))
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith("total (sha256 ") and f"step `fit` of run {latest}" in lines[0]
    assert "parameters: scale=3" in lines[1]
    # `load` did not change between the runs: its result was reused from the first run
    assert "df (sha256" in lines[2] and f"computed in run {first}" in lines[2]
    assert "read data.csv (sha256" in lines[3]
    tree = json.loads(cli("lineage", f"{latest}:total", "-C", str(folder), "--json").stdout)
    assert tree["inputs"][0]["variable"] == "df" and tree["inputs"][0]["files"]


def test_report_has_timings_and_metric_history(pipeline, cli, tmp_path: Path) -> None:
    folder, (latest, _) = pipeline
    out = tmp_path / "report.html"
    done = cli("runs", "report", latest, "-C", str(folder), "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert f"Run {latest}" in page and "<h3>total: 18 in this run</h3>" in page
    assert len(re.findall(r"data:image/png;base64,", page)) == 2


def test_lineage_of_an_unknown_output_is_one_line(pipeline, cli) -> None:
    folder, (latest, _) = pipeline
    done = cli("lineage", f"{latest}:nothing", "-C", str(folder))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"jupyter mlops: error: run {latest} has no output "
                                   "`nothing`; its outputs are: df, total")
