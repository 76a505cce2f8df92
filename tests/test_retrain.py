"""Retraining with real runs: monitor --retrain runs the pipeline on the new data, records why
and what it would replace, and the promotion rule decides what is served; the store's
migration brings an older store along."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from loop_helpers import Server, build_pipeline, make_data, one_line_error, wait_for

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.pipeline.spec import PipelineSpec
from jupyter_mlops.run.records import RunRecord, StepRecord
from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.serving.retrain import data_parameter, decide, read_policy

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pipeline(tmp_path_factory.mktemp("retrain"))


def _store(pipeline: Path) -> RunStore:
    return RunStore(default_store(pipeline))


def _monitor_json(pipeline: Path, data: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("monitor", str(pipeline), "--data", str(data), "--json", *args)
    assert done.returncode in (0, 3), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_drift_retrains_and_the_better_run_is_promoted(pipeline: Path, tmp_path: Path) -> None:
    store = _store(pipeline)
    first = store.served_run("loop")
    store.close()
    # `a` moved by 2, the outcome still follows it, with less noise: learnable, not worse
    data = make_data(tmp_path / "moved.csv", 600, shift=2.0, noise=0.2, seed=21)
    server = Server(str(pipeline), "--check-every", "0.2")
    try:
        assert server.get_json("/health")["run_id"] == first
        code, report = _monitor_json(pipeline, data, "--retrain", "--report",
                                     str(tmp_path / "r1"), "--labels", "label")
        assert code == 3, report
        outcome = report["retrain"]
        # the whole loop: the server that was running now serves the promoted run
        wait_for(server, outcome["run_id"])
        row = {"a": 2.1, "b": 0.0, "c": "y"}
        assert server.predict(row)[1]["run_id"] == outcome["run_id"]
    finally:
        stopped, err = server.stop()
    assert stopped == 0 and "Traceback" not in err, err
    assert outcome["status"] == "succeeded" and outcome["replaces"] == first
    assert outcome["promoted"] is True, outcome
    store = _store(pipeline)
    try:
        new = store.run(outcome["run_id"])
        assert new.parameters["data_path"] == str(data.resolve())
        assert new.replaces == first
        assert new.trigger["trigger"] in ("drift", "metrics")
        assert new.trigger["scores"]["a"] < 0.05  # the KS p-value that triggered it
        assert new.started_by.startswith("retrain:")
        assert store.served_run("loop") == outcome["run_id"]
        (decision,) = store.promotions("loop")
        assert decision.promoted and decision.served == outcome["run_id"]
        assert decision.previous == first and "not worse" in decision.reason
    finally:
        store.close()
    # the next monitor compares with the promoted run: the moved data is its own now
    code, again = _monitor_json(pipeline, make_data(tmp_path / "m2.csv", 600, shift=2.0,
                                                    noise=0.2, seed=22),
                                "--report", str(tmp_path / "r2"))
    assert again["run_id"] == outcome["run_id"]
    assert "a" not in again["drift"]["drifted"]
    listed = run_cli("runs", "-C", str(pipeline))
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if outcome["run_id"] in x)
    assert "served" in line and "retrain" in line


def test_a_worse_run_is_not_promoted_and_the_decision_is_recorded(pipeline: Path,
                                                                   tmp_path: Path) -> None:
    store = _store(pipeline)
    served = store.served_run("loop")
    store.close()
    noise = make_data(tmp_path / "noise.csv", 600, shift=2.0, random_labels=True, seed=23)
    # a policy in pipeline.yaml retrains without --retrain
    spec_file = pipeline / "pipeline.yaml"
    original = spec_file.read_text()
    spec_file.write_text(original + "retrain:\n  drift_share: 0.3\n")
    try:
        code, report = _monitor_json(pipeline, noise, "--report", str(tmp_path / "r"),
                                     "--labels", "label")
    finally:
        spec_file.write_text(original)
    assert code == 3
    outcome = report["retrain"]
    assert outcome is not None and outcome["promoted"] is False
    assert outcome["served"] == served
    store = _store(pipeline)
    try:
        assert store.served_run("loop") == served
        decision = store.promotions("loop")[-1]
        assert not decision.promoted and decision.candidate == outcome["run_id"]
        assert decision.served == served and decision.reason
        assert store.run(outcome["run_id"]).replaces == served
    finally:
        store.close()


def test_promotion_rule_follows_each_metrics_direction() -> None:
    checks = {"metrics": {"rmse": {"value": 3.0, "max": 3.3, "direction": "lower"},
                          "r2": {"value": 0.8, "min": 0.7}}}

    def run(run_id: str, **metrics: float) -> RunRecord:
        return RunRecord(run_id, "loop", "0" * 64, "succeeded", 0.0, "/runs", metrics=metrics)

    current = run("old", rmse=3.0, r2=0.8)
    assert decide(run("new", rmse=2.9, r2=0.8), current, checks)[0] is True
    promoted, reason = decide(run("new", rmse=3.1, r2=0.85), current, checks)
    assert not promoted and "rmse 3.1 is worse than 3" in reason
    assert decide(run("new", rmse=3.1, r2=0.85), current, checks, tolerance=0.2)[0] is True
    assert not decide(run("new", rmse=2.0, r2=0.79), current, checks)[0]
    failed = replace(run("new", rmse=1.0, r2=0.9), status="failed", error="boom")
    assert decide(failed, current, checks) == (False, "run new failed: boom")
    broken = run("new", rmse=1.0)
    broken.steps = [StepRecord("new", "check", checks=[{"check": "schema", "ok": False}])]
    assert not decide(broken, current, checks)[0]
    assert decide(run("new"), None, checks) == (True, "no run was served before")



def _record(run_id: str, **metrics: float) -> RunRecord:
    return RunRecord(run_id, "loop", "0" * 64, "succeeded", 0.0, "/runs", metrics=metrics)


def test_without_checks_the_direction_comes_from_the_metrics_name() -> None:
    # the churn example records accuracy, f1 and roc_auc with no checks: a worse retrain
    # was promoted ("no metric with a known direction to compare")
    served = _record("old", accuracy=0.7857, f1=0.5643, roc_auc=0.8414)
    worse = _record("new", accuracy=0.7667, f1=0.4262, roc_auc=0.8188)
    promoted, reason = decide(worse, served, {})
    assert not promoted
    assert "accuracy 0.7667 is worse than 0.7857 (higher is better)" in reason
    assert "each on its own evaluation" in reason
    better = _record("new", accuracy=0.80, f1=0.60, roc_auc=0.85)
    promoted, reason = decide(better, served, {})
    assert promoted and "accuracy 0.8 vs 0.7857" in reason
    assert decide(_record("n", val_loss=0.2), _record("o", val_loss=0.3), {})[0]
    assert not decide(_record("n", neg_mean_squared_error=-2.0),
                      _record("o", neg_mean_squared_error=-1.0), {})[0]


def test_what_cannot_be_compared_is_not_promoted_automatically() -> None:
    promoted, reason = decide(_record("new", widgets=3.0), _record("old", widgets=2.0), {})
    assert not promoted
    assert "`widgets` has no known direction" in reason
    assert "jupyter mlops promote new" in reason and "widgets 3 vs 2" in reason
    promoted, reason = decide(_record("new", accuracy=0.9), _record("old", f1=0.5), {})
    assert not promoted and "no metric in common" in reason
    # a check's direction wins over the name
    checks = {"metrics": {"widgets": {"value": 2.0, "max": 2.5}}}
    assert decide(_record("new", widgets=1.0), _record("old", widgets=2.0), checks)[0]


def test_figures_on_the_same_data_replace_each_runs_own() -> None:
    served = _record("old", accuracy=0.70)
    new = _record("new", accuracy=0.90)  # better on its own split, worse on the new rows
    promoted, reason = decide(new, served, {}, same_data={"accuracy": (0.60, 0.65)},
                              basis="both models on the 600 labelled rows of the new data")
    assert not promoted
    assert reason == ("accuracy 0.6 is worse than 0.65 (higher is better) (both models on "
                      "the 600 labelled rows of the new data)")


@pytest.mark.parametrize(("name", "direction"), [
    ("accuracy", "higher"), ("test_accuracy", "higher"), ("valF1", "higher"),
    ("roc_auc", "higher"), ("r2", "higher"), ("rmse", "lower"), ("val_loss", "lower"),
    ("mean_absolute_error", "lower"), ("neg_log_loss", "higher"), ("widgets", None),
    ("loss_score", None)])
def test_metric_direction_by_name(name: str, direction: str | None) -> None:
    from jupyter_mlops.serving.scoring import metric_direction

    assert metric_direction(name) == direction


def test_a_worse_retrain_without_checks_stays_out_and_promote_decides_by_hand(
        pipeline: Path, tmp_path: Path) -> None:
    store = _store(pipeline)
    served = store.served_run("loop")
    store.close()
    spec_file = pipeline / "pipeline.yaml"
    original = spec_file.read_text()
    spec = PipelineSpec.read(pipeline)
    spec.checks = {**spec.checks, "metrics": {}}  # as the churn example: no metric checks
    # one column of three moves: drift at a share of 0.3 starts the retraining
    spec_file.write_text(spec.to_yaml() + "retrain:\n  drift_share: 0.3\n")
    try:
        noise = make_data(tmp_path / "shuffled.csv", 600, shift=-3.0, random_labels=True,
                          seed=31)
        code, report = _monitor_json(pipeline, noise, "--retrain", "--report",
                                     str(tmp_path / "r"), "--labels", "label")
    finally:
        spec_file.write_text(original)
    assert code == 3
    outcome = report["retrain"]
    assert outcome["status"] == "succeeded" and outcome["promoted"] is False, outcome["reason"]
    assert "accuracy" in outcome["reason"] and "is worse than" in outcome["reason"]
    assert "held-out rows, X_test/y_test of step prepare" in outcome["reason"]
    # the author looks at the figures and decides otherwise: by hand, recorded
    done = run_cli("promote", outcome["run_id"], "-C", str(pipeline))
    assert done.returncode == 0, done.stderr
    assert f"over run {served}" in done.stdout and "accuracy" in done.stdout
    again = run_cli("promote", outcome["run_id"], "-C", str(pipeline))
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "served already" in again.stderr
    store = _store(pipeline)
    try:
        assert store.served_run("loop") == outcome["run_id"]
        decision = store.promotions("loop")[-1]
        assert decision.promoted and decision.reason.startswith("promoted by ")
        # leave the module's pipeline as it was for the tests after this one
        store.record_promotion("loop", served, candidate=served, previous=outcome["run_id"],
                               promoted=True, reason="restored by the test")
    finally:
        store.close()

def test_the_data_parameter_is_found_or_named(pipeline: Path) -> None:
    spec = PipelineSpec.read(pipeline)
    assert data_parameter(spec, pipeline) == "data_path"
    spec.parameters = [p for p in spec.parameters if p.name != "data_path"]
    with pytest.raises(MlopsError, match="no parameter that names its data file") as err:
        data_parameter(spec, pipeline)
    assert "\n" not in str(err.value)


def test_a_malformed_policy_is_one_line(pipeline: Path, tmp_path: Path) -> None:
    spec_file = pipeline / "pipeline.yaml"
    original = spec_file.read_text()
    data = make_data(tmp_path / "d.csv", 50, seed=24)
    try:
        for policy, expected in (("  drift_share: 2\n", "drift_share is 2"),
                                 ("  every: day\n", "unknown key `every`"),
                                 ("  metrics: {accuracy: 0.9}\n", "metrics.accuracy"),
                                 ("  data_parameter: C2\n", "no parameter `C2`")):
            spec_file.write_text(original + "retrain:\n" + policy)
            if "data_parameter" in policy:
                with pytest.raises(MlopsError, match=expected):
                    data_parameter(PipelineSpec.read(pipeline), pipeline,
                                   read_policy(pipeline))
                continue
            line = one_line_error(run_cli("monitor", str(pipeline), "--data", str(data)))
            assert expected in line, line
    finally:
        spec_file.write_text(original)


def test_an_older_store_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, "
               "spec_sha256 TEXT NOT NULL, status TEXT NOT NULL, started REAL NOT NULL, "
               "ended REAL, folder TEXT NOT NULL, parameters TEXT NOT NULL, "
               "environment TEXT NOT NULL, started_by TEXT NOT NULL, error TEXT)")
    db.execute("INSERT INTO runs VALUES ('r0', 'p', 'x', 'succeeded', 1.0, 2.0, '/f', '{}', "
               "'{}', 'me', NULL)")
    db.commit()
    db.close()
    store = RunStore(path)
    try:
        old = store.run("r0")
        assert old.trigger is None and old.replaces is None
        assert store.served_run("p") == "r0"
        store.start_run("r1", "p", "x", tmp_path / "r1", {}, {}, "me", ["a"])
        store.set_trigger("r1", {"trigger": "drift", "scores": {"a": 0.01}}, "r0")
        new = store.run("r1")
        assert new.trigger == {"trigger": "drift", "scores": {"a": 0.01}}
        assert new.replaces == "r0"
        store.record_promotion("p", "r0", candidate="r1", previous="r0", promoted=False,
                               reason="r1 is running")
        store.finish_run("r1", "succeeded", None)
        # a recorded decision wins over "the latest that succeeded"
        assert store.served_run("p") == "r0"
    finally:
        store.close()
    assert RunStore(path).run("r1").replaces == "r0"  # opening it again changes nothing
