"""`jupyter mlops monitor` on a real run: same data is healthy (exit 0), shifted data is drift
(exit 3), labelled data gets its metrics computed again with the run's model, and the
report is JSON plus a self-contained HTML page with a plot per column."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli
from loop_helpers import build_pipeline, make_data, one_line_error

from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.runtime.artifacts import load
from jupyter_mlops.serving.monitor import monitor
from jupyter_mlops.serving.scoring import metric_value

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pipeline(tmp_path_factory.mktemp("monitor"))


@pytest.fixture(scope="module")
def run(pipeline: Path) -> dict[str, Any]:
    store = RunStore(default_store(pipeline))
    try:
        return store.runs()[0]
    finally:
        store.close()


def _monitor(pipeline: Path, data: Path, report: Path, *args: str) -> tuple[int, dict, str]:
    done = run_cli("monitor", str(pipeline), "--data", str(data), "--report", str(report),
                   *args)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads((report / "monitor.json").read_text()), done.stdout


def test_same_data_is_healthy_with_a_plot_per_column(pipeline: Path, run: dict[str, Any],
                                                     tmp_path: Path) -> None:
    data = make_data(tmp_path / "same.csv", 500, seed=11)
    code, report, stdout = _monitor(pipeline, data, tmp_path / "report")
    assert code == 0, stdout
    assert report["healthy"] and report["reasons"] == []
    assert report["run_id"] == run.run_id
    # the run's training frame is the reference: the columns the new data shares with it
    assert report["reference"]["variable"] == "X_train"
    assert sorted(report["drift"]["columns"]) == ["a", "b", "c"]
    assert report["drift"]["drifted"] == []
    page = (tmp_path / "report" / "monitor.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 3
    assert all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "healthy" in stdout


def test_shifted_data_is_drift_and_exit_3(pipeline: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "shifted.csv", 500, shift=2.0, seed=12)
    code, report, stdout = _monitor(pipeline, data, tmp_path / "one")
    # one column of three is under the default share of 0.5, but it is the one the model
    # leans on most (the label follows a, then c, then b): unhealthy by importance
    assert report["drift"]["drifted"] == ["a"]
    assert report["drift"]["columns"]["a"]["drift"] is True
    assert report["drift"]["share"] == pytest.approx(1 / 3)
    weighted = report["importance"]
    assert weighted["method"].startswith("permutation importance on X_test/y_test")
    assert weighted["share"] >= 0.3 and list(weighted["columns"]) == ["a"]
    assert code == 3, stdout
    (reason,) = report["reasons"]
    assert reason.startswith(f"{weighted['share']:.2f} of the model's importance is on drifted "
                             "columns (a ")
    assert "importance on drifted columns" in stdout
    # the same figures again: computed once per run, then read from the run's folder
    assert list((Path(report_run_folder(pipeline)) / "profiles").glob("importance.model.*"))
    frame = pd.read_csv(data)
    frame["b"] = frame["b"] * 3
    frame.to_csv(data, index=False)
    code, report, stdout = _monitor(pipeline, data, tmp_path / "two")
    assert code == 3, stdout
    assert not report["healthy"] and report["drift"]["drifted"] == ["a", "b"]
    assert report["reasons"][0] == "2 of 3 columns drifted (a, b), at or above the share 0.5"
    assert "UNHEALTHY" in stdout


def report_run_folder(pipeline: Path) -> str:
    from jupyter_mlops.run.store import RunStore, default_store

    store = RunStore(default_store(pipeline))
    try:
        return store.run(store.served_run()).folder
    finally:
        store.close()


def test_a_shift_in_a_column_the_model_barely_uses_stays_healthy(pipeline: Path,
                                                                 tmp_path: Path) -> None:
    data = make_data(tmp_path / "b.csv", 500, seed=15)
    frame = pd.read_csv(data)
    frame["b"] = frame["b"] + 2.0
    frame.to_csv(data, index=False)
    code, report, stdout = _monitor(pipeline, data, tmp_path / "b")
    assert report["drift"]["drifted"] == ["b"]
    assert report["importance"]["share"] < 0.3, report["importance"]
    assert code == 0 and report["healthy"], stdout


def test_the_reference_is_the_frame_most_like_the_new_data(pipeline: Path,
                                                           tmp_path: Path) -> None:
    data = make_data(tmp_path / "same.csv", 300, seed=16)
    code, report, stdout = _monitor(pipeline, data, tmp_path / "ref")
    assert code == 0, stdout
    reference = report["reference"]
    assert reference["variable"] == "X_train" and reference["stage"] == "model input"
    assert reference["why"] == ("3 of the new data's 4 columns shared with `X_train`'s 3 "
                                "(similarity 0.75)")
    assert "compared with: model input `X_train` of step prepare" in stdout
    _, report, _ = _monitor(pipeline, data, tmp_path / "ref2", "--stage", "prepare")
    assert report["reference"]["step"] == "prepare"
    done = run_cli("monitor", str(pipeline), "--data", str(data), "--stage", "nope",
                   "--report", str(tmp_path / "ref3"))
    assert done.returncode == 2
    assert done.stderr.strip().endswith("has no step `nope`; its steps are prepare, train, "
                                        "evaluate")


def test_metrics_are_computed_again_on_labelled_data(pipeline: Path, run: dict[str, Any],
                                                     tmp_path: Path) -> None:
    data = make_data(tmp_path / "labelled.csv", 500, seed=13)
    code, report, _ = _monitor(pipeline, data, tmp_path / "good", "--labels", "label")
    frame = pd.read_csv(data)
    model = load("model", Path(run.folder) / "artifacts" / "train")
    expected = float((model.predict(frame[["a", "b", "c"]]) == frame["label"]).mean())
    (accuracy,) = report["metrics"]
    assert accuracy["name"] == "accuracy" and accuracy["value"] == pytest.approx(expected)
    assert accuracy["run_value"] == run.metrics["accuracy"]
    assert accuracy["min"] is not None and accuracy["ok"] is True
    assert code == 0

    noise = make_data(tmp_path / "noise.csv", 500, random_labels=True, seed=14)
    code, report, stdout = _monitor(pipeline, noise, tmp_path / "bad", "--labels", "label")
    assert code == 3
    (accuracy,) = report["metrics"]
    assert accuracy["ok"] is False and accuracy["value"] < accuracy["min"]
    assert any("metric `accuracy`" in r for r in report["reasons"])
    assert "BEYOND THRESHOLD" in stdout


def test_metric_formulas_match_scikit_learn(pipeline: Path, run: dict[str, Any],
                                            tmp_path: Path) -> None:
    from sklearn import metrics

    frame = pd.read_csv(make_data(tmp_path / "m.csv", 300, seed=15))
    model = load("model", Path(run.folder) / "artifacts" / "train")
    X, y = frame[["a", "b", "c"]], frame["label"]
    assert metric_value("f1", y, model, X) == pytest.approx(
        metrics.f1_score(y, model.predict(X)))
    assert metric_value("roc_auc", y, model, X) == pytest.approx(
        metrics.roc_auc_score(y, model.predict_proba(X)[:, 1]))
    assert metric_value("baseline_roc_auc", y, model, X) is None


def test_policy_share_turns_one_drifted_column_unhealthy(pipeline: Path,
                                                         tmp_path: Path) -> None:
    from jupyter_mlops.serving.retrain import RetrainPolicy

    data = make_data(tmp_path / "shifted.csv", 500, shift=2.0, seed=16)
    report = monitor(pipeline, data, policy=RetrainPolicy(drift_share=0.3))
    assert not report["healthy"]
    assert "1 of 3 columns drifted (a)" in report["reasons"][0]


def test_monitor_user_errors_are_one_line(pipeline: Path, tmp_path: Path) -> None:
    data = make_data(tmp_path / "d.csv", 100, seed=17)
    line = one_line_error(run_cli("monitor", str(pipeline), "--data", str(tmp_path / "no.csv")))
    assert "no data file" in line
    line = one_line_error(run_cli("monitor", str(pipeline), "--data", str(data), "--labels",
                                  "outcome", "--report", str(tmp_path / "r")))
    assert "no column `outcome`" in line
    pd.read_csv(data).drop(columns=["b"]).to_csv(tmp_path / "nob.csv", index=False)
    line = one_line_error(run_cli("monitor", str(pipeline), "--data", str(tmp_path / "nob.csv"),
                                  "--labels", "label", "--report", str(tmp_path / "r")))
    assert "lacks the model's input columns b" in line
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    line = one_line_error(run_cli("monitor", str(pipeline), "--data",
                                  str(tmp_path / "bad.parquet")))
    assert "cannot read" in line and "bad.parquet" in line
    (tmp_path / "other.csv").write_text("x,y\n1,2\n")
    line = one_line_error(run_cli("monitor", str(pipeline), "--data", str(tmp_path / "other.csv"),
                                  "--report", str(tmp_path / "r")))
    assert "shares no column" in line
    line = one_line_error(run_cli("monitor", str(tmp_path), "--data", str(data)))
    assert "not a pipeline folder" in line
