"""Serving the pipeline, not just the model: raw churn records in, the notebook's own prepare
cells replayed, the skew check, batch scoring and monitoring of raw data.

The churn example is exported and run once for the module (about 15 s); a real `jupyter
mlops serve` process answers; the expected predictions are computed here by hand, with the
notebook's preparation written out in the test and the run's model, so a replay that
drifted from the notebook would fail."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLES, write_notebook
from loop_helpers import Server

from jupyter_mlops.run.records import RunRecord
from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.runtime.artifacts import load

pytestmark = pytest.mark.kernel


def cli(*args: Any, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The churn example, exported and run once."""
    root = tmp_path_factory.mktemp("churn")
    shutil.copytree(EXAMPLES / "churn", root / "churn")
    cli("export", root / "churn" / "churn.ipynb", "-o", root / "pipe")
    (root / "run.out").write_text(cli("run", root / "pipe").stdout)
    return root


@pytest.fixture(scope="module")
def run(churn: Path) -> RunRecord:
    store = RunStore(default_store(churn / "pipe"))
    try:
        return store.runs()[0]
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(churn: Path) -> Iterator[Server]:
    served = Server(str(churn / "pipe"))
    yield served
    code, err = served.stop()
    assert code == 0 and "Traceback" not in err, err


def raw_rows(churn: Path) -> pd.DataFrame:
    return pd.read_csv(churn / "churn" / "data" / "churn.csv").drop(columns=["churned"])


def by_hand(raw: pd.DataFrame, run: RunRecord) -> list[Any]:
    """The notebook's cells 13 and 14 written out, then the run's own model."""
    df = raw.copy()
    df = df.fillna({"payment_method": "Unknown"})
    kept = df["total_charges"].notna()
    df = df[kept].drop(columns=["customer_id"])
    df["avg_monthly_spend"] = df["total_charges"] / df["tenure_months"]
    df["calls_per_year"] = df["support_calls"] / df["tenure_months"] * 12
    model = load("clf", Path(run.folder) / "artifacts" / "train_tuned")
    predicted = iter(model.predict(df[list(model.feature_names_in_)]).tolist())
    return [next(predicted) if keep else None for keep in kept]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def test_raw_records_get_the_predictions_the_notebook_computes(
        churn: Path, run: RunRecord, server: Server) -> None:
    raw = raw_rows(churn)
    sample = pd.concat([raw[raw["age"].isna()].head(5), raw[raw["payment_method"].isna()]
                        .head(5), raw[raw["total_charges"].isna()].head(2), raw.head(20)])
    assert sample["age"].isna().sum() >= 5 and sample["payment_method"].isna().sum() >= 5
    status, data = server.request("POST", "/predict/raw", json.dumps(records(sample)).encode())
    body = json.loads(data)
    assert status == 200, body
    assert body["predictions"] == by_hand(sample, run)
    # no total_charges: cell 13 drops them
    assert body["dropped"] == [i for i, v in enumerate(sample["total_charges"]) if pd.isna(v)]
    assert len(body["dropped"]) >= 2
    health = server.get_json("/health")
    assert health["skew_check"]["passed"] is True and health["skew_check"]["mismatches"] == 0
    assert "customer_id" in health["raw_inputs"] and "churned" not in health["raw_inputs"]


def test_each_run_records_its_skew_check_and_runs_show_says_it(churn: Path, run: RunRecord
                                                              ) -> None:
    said = (churn / "run.out").read_text()
    assert "skew check passed: 2,000 raw rows of the run prepared again (41 dropped), the same " \
        "frame as the run's; all 490 predictions of X_test/y_test of step split the same" in said
    shown = cli("runs", "show", run.run_id, "-C", churn / "pipe").stdout
    assert "Skew check: passed: 2,000 raw rows" in shown
    checks = json.loads(cli("runs", "show", run.run_id, "-C", churn / "pipe", "--json").stdout
                        )["skew_checks"]
    assert checks[0]["passed"] is True and checks[0]["mismatches"] == 0
    assert checks[0]["code_sha256"] and checks[0]["inputs"]
    # a re-run from the cache reads the same code and artifacts: checked once, said again
    again = cli("run", churn / "pipe").stdout
    assert f"as checked for run {run.run_id} (same code and artifacts)" in again, \
        again + _unlike(churn / "pipe", run)
    # a scheduled run is checked too, before its last line
    from jupyter_mlops.run.results import new_run_id

    run_id = new_run_id()
    done = subprocess.run([sys.executable, "-m", "jupyter_mlops.jobs.runjob", churn / "pipe",
                           "--run-id", run_id, "--store", default_store(churn / "pipe"),
                           "--trigger", json.dumps({"job": "nightly", "trigger": "schedule"})],
                          capture_output=True, text=True, timeout=300, check=False)
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0 and lines[-1] == f"run {run_id} succeeded", done.stdout
    assert lines[-2].startswith("skew check passed"), done.stdout


def test_the_check_ahead_answers_as_the_check_and_survives_its_process(
        churn: Path, run: RunRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    """`jupyter mlops run` asks a process that imported scikit-learn while the run ran (the
    fixture's run got its check line from one): it answers one JSON line; a run whose check
    can be reused does not wait for it; a process that died is replaced by the check in this
    process; a failed run leaves no such process behind."""
    from jupyter_mlops.serving import skew
    from jupyter_mlops.serving.skewahead import CheckAhead

    request = json.dumps({"pipeline": str(churn / "pipe"), "run_id": run.run_id,
                          "store": None})
    asked = subprocess.run([sys.executable, "-m", "jupyter_mlops.serving.skewahead"],
                           input=request + "\n", capture_output=True, text=True, timeout=300,
                           check=True)
    (line,) = asked.stdout.splitlines()
    note = json.loads(line)["note"]
    assert note.startswith("skew check passed: 2,000 raw rows of the run prepared again "
                           "(41 dropped)") and note.endswith(
        "all 490 predictions of X_test/y_test of step split the same"), note
    # checked: the next run of the same code on the same artifacts reuses it without asking
    # its process, here a stand-in that never answers (asked, the test would hang)
    again = CheckAhead(churn / "pipe")
    again.close()
    again.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert again.check(churn / "pipe", run.run_id) == note
    monkeypatch.setattr(skew, "after_run",
                        lambda *a, reuse_only=False: None if reuse_only else "checked here")
    dead = CheckAhead(churn / "pipe")
    assert dead.process is not None
    dead.process.kill()
    assert dead.check(churn / "pipe", run.run_id) == "checked here"
    closed = CheckAhead(churn / "pipe")
    assert closed.process is not None
    process = closed.process
    closed.close()
    assert process.poll() is not None


def _unlike(pipe: Path, first: RunRecord) -> str:
    """For a failure's message: how the newest run's steps differ from ``first``'s (which
    one ran again rather than coming from the cache, and what of its key changed)."""
    store = RunStore(default_store(pipe))
    try:
        newest = store.runs()[0]
        lines = [f"environment of {first.run_id}: {first.environment}",
                 f"environment of {newest.run_id}: {newest.environment}"]
        for step in newest.steps:
            before = first.step(step.step)
            if before is None:
                lines.append(f"{step.step}: not in run {first.run_id}")
                continue
            same = {what: getattr(step, what) == getattr(before, what)
                    for what in ("cache_key", "files", "inputs", "code_sha256", "parameters")}
            lines.append(f"{step.step}: {step.status}, from {step.cached_from}, same {same}, "
                         f"{step.duration}")
        return "\n".join(lines)
    finally:
        store.close()


def test_a_preparation_that_gives_other_rows_each_time_fails_its_check_after_the_run(
        tmp_path: Path) -> None:
    """A prepare cell that draws random numbers prepares other values at serve time than in
    the run: the run stands, its check fails and says so, and serve refuses the run."""
    rng = np.random.default_rng(1)
    pd.DataFrame({"x": rng.normal(size=120), "y": rng.normal(size=120)}).to_csv(
        tmp_path / "data.csv", index=False)
    notebook = write_notebook(
        tmp_path / "nb.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops step load\nimport pandas as pd\ndf = pd.read_csv('data.csv')",
        "%%mlops step prep --prepare\nimport numpy as np\n"
        "df['jitter'] = df['x'] + np.random.normal(size=len(df))",
        "%%mlops step fit\nfrom sklearn.linear_model import LinearRegression\n"
        "from sklearn.model_selection import train_test_split\n"
        "X_train, X_test, y_train, y_test = train_test_split(df[['x', 'jitter']], df['y'])",
        "%%mlops data X_train X_test y_train y_test\nX_train.shape",
        "%%mlops model model\nmodel = LinearRegression().fit(X_train, y_train)")
    cli("export", notebook, "-o", tmp_path / "pipe")
    done = cli("run", tmp_path / "pipe")
    assert "warning: skew check failed: 120 raw rows of the run prepared again (0 dropped): " \
        "the prepared jitter differ; serve and predict refuse this run" in done.stdout
    refused = cli("serve", tmp_path / "pipe", "--port", "0", check=False)
    assert refused.returncode == 2 and "fails the training/serving skew check" in \
        refused.stderr, refused.stderr


def test_a_bug_in_the_skew_check_leaves_the_run_with_one_line(
        churn: Path, run: RunRecord, monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in for a bug of ours (nothing real raises here on purpose): after_run turns
    it into one warning line instead of a traceback after a run that succeeded."""
    import jupyter_mlops.serving.skew as skew

    def broken(*args: Any) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(skew, "_reused", broken)
    assert skew.after_run(churn / "pipe", run.run_id) == (
        "warning: the training/serving skew check failed (TypeError: boom); please report this")


def test_the_model_input_endpoint_stays(server: Server, run: RunRecord) -> None:
    x_test = load("X_test", Path(run.folder) / "artifacts" / "split")
    status, body = server.predict(records(x_test.head(10)))
    assert status == 200, body
    model = load("clf", Path(run.folder) / "artifacts" / "train_tuned")
    assert body["predictions"] == model.predict(x_test.head(10)).tolist()


@pytest.mark.parametrize(("change", "status", "words"), [
    (lambda r: r.pop("region"), 422, "record 0 has no column `region`"),
    (lambda r: r.update(tenure_months="long"), 422, "column `tenure_months` is str"),
    (lambda r: r.update(favourite_colour="red"), 422, "column `favourite_colour`"),
])
def test_a_raw_record_that_does_not_fit_is_a_422_naming_the_column(
        churn: Path, server: Server, change: Any, status: int, words: str) -> None:
    record = records(raw_rows(churn).head(1))[0]
    change(record)
    code, data = server.request("POST", "/predict/raw", json.dumps([record]).encode())
    assert code == status and words in json.loads(data)["error"], data


def test_raw_records_under_load_get_no_5xx(churn: Path, server: Server) -> None:
    rows = records(raw_rows(churn).head(100))
    bodies = [json.dumps(rows[i % 100:i % 100 + 1 + i % 5]).encode() for i in range(600)]
    start = time.perf_counter()
    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(lambda b: server.request("POST", "/predict/raw", b)[0], bodies))
    took = time.perf_counter() - start
    assert set(codes) == {200}, sorted(set(codes))
    assert server.get_json("/health")["status"] == "ok"
    print(f"600 raw requests from 20 clients in {took:.1f} s")


def test_predict_scores_a_raw_file_in_chunks(churn: Path, run: RunRecord, tmp_path: Path
                                             ) -> None:
    raw = raw_rows(churn)
    raw.to_csv(tmp_path / "new.csv", index=False)
    done = cli("predict", churn / "pipe", "--data", tmp_path / "new.csv", "-o",
               tmp_path / "out.parquet")
    assert f"of {len(raw):,} raw records" in done.stdout and "dropped by the preparation" \
        in done.stdout
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["record"].tolist() == list(range(len(raw)))
    expected = by_hand(raw, run)
    got = [None if p is None or (isinstance(p, float) and np.isnan(p)) else int(p)
           for p in out["prediction"]]
    assert got == expected
    assert np.allclose(out[["proba_0", "proba_1"]].dropna().sum(axis=1), 1.0)
    # JSON lines in, CSV out, chunks smaller than the file
    raw.head(300).to_json(tmp_path / "new.jsonl", orient="records", lines=True)
    from jupyter_mlops.serving.batch import predict_file

    result = predict_file(churn / "pipe", tmp_path / "new.jsonl", output=tmp_path / "o.csv",
                          chunk_rows=70)
    assert result.rows == 300 and result.prepared
    assert pd.read_csv(tmp_path / "o.csv")["record"].tolist() == list(range(300))


@pytest.mark.parametrize(("data", "words"), [
    ("missing.csv", "no data file"),
    ("bad.txt", "is not .csv, .parquet or .jsonl"),
    ("noregion.csv", "the records have no column `region`"),
])
def test_predict_refuses_in_one_line_and_writes_nothing(churn: Path, tmp_path: Path,
                                                        data: str, words: str) -> None:
    raw_rows(churn).drop(columns=["region"]).to_csv(tmp_path / "noregion.csv", index=False)
    (tmp_path / "bad.txt").write_text("x")
    done = cli("predict", churn / "pipe", "--data", tmp_path / data, "-o",
               tmp_path / "out.csv", check=False)
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()
    assert not list(tmp_path.glob(".out.csv*"))


def test_monitor_scores_raw_labelled_data_through_the_preparation(churn: Path,
                                                                  tmp_path: Path) -> None:
    new = pd.read_csv(churn / "churn" / "data" / "churn.csv").sample(600, random_state=5)
    new.to_csv(tmp_path / "new_customers.csv", index=False)
    done = cli("monitor", churn / "pipe", "--data", tmp_path / "new_customers.csv",
               "--labels", "churned", "--json", "--report", tmp_path / "report")
    report = json.loads(done.stdout)
    assert report["reference"]["variable"] == "df" and report["reference"]["step"] == "load"
    assert "prepare cells" in report["metrics_on"]
    assert {m["name"] for m in report["metrics"] if m["value"] is not None} >= {
        "accuracy", "roc_auc"}
    stage = report["model_input"]
    assert stage["rows"] + stage["dropped"] == 600
    assert set(stage["drift"]["columns"]) >= {"avg_monthly_spend", "calls_per_year"}


def test_a_prepare_cell_changed_after_the_run_fails_the_skew_check(churn: Path) -> None:
    changed = churn / "changed"
    shutil.copytree(churn / "churn", changed)
    notebook = changed / "churn.ipynb"
    notebook.write_text(notebook.read_text().replace('\\"Unknown\\"', '\\"Other\\"'))
    cli("export", notebook, "-o", churn / "pipe")  # the same folder: its runs stay
    done = cli("serve", churn / "pipe", "--port", "0", check=False)
    assert done.returncode == 2
    assert "fails the training/serving skew check" in done.stderr
    assert "payment_method" in done.stderr or "predictions" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    # and the run store recorded the failed check with its figures
    store = RunStore(default_store(churn / "pipe"))
    try:
        rows = store.db.execute("SELECT passed, figures FROM skew_checks").fetchall()
    finally:
        store.close()
    assert {passed for passed, _ in rows} == {0, 1}


def test_a_prepare_cell_that_raises_on_a_record_is_a_422_and_serving_goes_on(
        tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"x": rng.normal(size=200).round(3) + 5, "y": rng.normal(size=200)}).to_csv(
        data, index=False)
    notebook = write_notebook(
        tmp_path / "nb.ipynb",
        "%load_ext jupyter_mlops",
        "%%mlops step load\nimport pandas as pd\ndf = pd.read_csv('data.csv')",
        "%%mlops step prep --prepare\nif (df['x'] <= 0).any():\n"
        "    raise ValueError('x must be positive, got ' + str(df['x'].min()))\n"
        "import numpy as np\ndf['logx'] = np.log(df['x'])",
        "%%mlops step fit\nfrom sklearn.linear_model import LinearRegression\n"
        "from sklearn.model_selection import train_test_split\n"
        "X_train, X_test, y_train, y_test = train_test_split(df[['x', 'logx']], df['y'])",
        "%%mlops data X_train X_test y_train y_test\nX_train.shape",
        "%%mlops model model\nmodel = LinearRegression().fit(X_train, y_train)")
    cli("export", notebook, "-o", tmp_path / "pipe")
    cli("run", tmp_path / "pipe")
    served = Server(str(tmp_path / "pipe"))
    try:
        status, data = served.request("POST", "/predict/raw",
                                      json.dumps([{"x": 2.0, "y": 0}, {"x": -1.0, "y": 0}])
                                      .encode())
        body = json.loads(data)
        assert status == 422 and "prepare cell 3 raised ValueError: x must be positive, got " \
            "-1.0" in body["error"], body
        assert body.get("record") == 1
        status, data = served.request("POST", "/predict/raw", json.dumps([{"x": 2.0}]).encode())
        assert status == 200 and len(json.loads(data)["predictions"]) == 1, data
    finally:
        code, err = served.stop()
    assert code == 0 and "Traceback" not in err, err


def test_without_prepare_cells_monitor_prepares_raw_rows_with_the_pipelines_steps(
        tmp_path: Path) -> None:
    """The way before prepare cells, kept for notebooks that mark none: the steps up to the
    first frame holding the model's inputs run on the new file, as a run of their own."""
    shutil.copytree(EXAMPLES / "churn", tmp_path / "churn")
    notebook = tmp_path / "churn" / "churn.ipynb"
    notebook.write_text(notebook.read_text().replace(" --prepare", ""))
    cli("export", notebook, "-o", tmp_path / "pipe")
    cli("run", tmp_path / "pipe")
    new = pd.read_csv(tmp_path / "churn" / "data" / "churn.csv").sample(400, random_state=2)
    new.to_csv(tmp_path / "new.csv", index=False)
    done = cli("monitor", tmp_path / "pipe", "--data", tmp_path / "new.csv", "--labels",
               "churned", "--json", "--report", tmp_path / "report")
    report = json.loads(done.stdout)
    assert report["metrics_on"].startswith("prepared by the pipeline's steps load, clean")
    assert report["model_input"] is None
    served = Server(str(tmp_path / "pipe"))
    try:
        status, data = served.request("POST", "/predict/raw", json.dumps(
            records(raw_rows(tmp_path).head(2))).encode())
    finally:
        served.stop()
    assert status == 404 and "marks no cell prepare" in json.loads(data)["error"]
