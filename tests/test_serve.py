"""`jupyter mlops serve` as a real process on loopback: predictions equal the model's own,
bad input is a JSON 4xx naming the column, /metrics is Prometheus text with drift of the
recent inputs, a served pipeline follows promotions, and a load with malformed requests
mixed in gets no 5xx while the server's memory stays flat."""

from __future__ import annotations

import json
import random
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import run_cli
from loop_helpers import (
    Server,
    build_pipeline,
    make_data,
    one_line_error,
    run_pipeline_cli,
    wait_for,
)

from jupyter_mlops.run.records import RunRecord
from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.runtime.artifacts import load

pytestmark = pytest.mark.kernel

PHASE = 800
"""Requests in each of the load test's three phases (a third of them malformed)."""


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pipeline(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def first_run(pipeline: Path) -> RunRecord:
    store = RunStore(default_store(pipeline))
    try:
        return store.runs()[0]
    finally:
        store.close()


@pytest.fixture(scope="module")
def server(pipeline: Path, first_run: RunRecord) -> Iterator[Server]:
    served = Server(first_run.run_id, "-C", str(pipeline), "--window", "100")
    yield served
    code, err = served.stop()
    assert code == 0, err  # a SIGTERM ends it cleanly
    assert "Traceback" not in err, err


def _rows(path: Path, count: int) -> list[dict[str, Any]]:
    frame = pd.read_csv(path).drop(columns=["label"])
    return frame.head(count).to_dict(orient="records")


def _model(run: dict[str, Any]) -> Any:
    folder = Path(run.folder) / "artifacts" / "train"
    return load("model", folder)


def test_predictions_are_the_models_own(server: Server, first_run: RunRecord,
                                        tmp_path: Path) -> None:
    rows = _rows(make_data(tmp_path / "new.csv", 50, seed=3), 50)
    status, body = server.predict(rows)
    assert status == 200, body
    expected = _model(first_run).predict(pd.DataFrame(rows)).tolist()
    assert body["predictions"] == expected
    assert body["run_id"] == first_run.run_id and body["model"] == "model"
    # one record alone, and the {"records": [...]} form
    assert server.predict(rows[0])[1]["predictions"] == expected[:1]
    assert server.predict({"records": rows[:3]})[1]["predictions"] == expected[:3]
    health = server.get_json("/health")
    assert health["status"] == "ok" and health["run_id"] == first_run.run_id
    assert health["inputs"] == ["a", "b", "c"]


@pytest.mark.parametrize(("payload", "status", "column"), [
    ([{"a": "x", "b": 0.1, "c": "y"}], 422, "a"),
    ([{"a": 0.3, "c": "y"}], 422, "b"),
    ([{"a": 0.3, "b": 0.1, "c": "y", "d": 1}], 422, "d"),
    ([{"a": None, "b": 0.1, "c": "y"}], 422, "a"),
    ([{"a": 0.3, "b": 0.1, "c": 7}], 422, "c"),
    ([{"a": 0.3, "b": 0.1, "c": {"nested": 1}}], 422, "c"),
    ([{"a": True, "b": 0.1, "c": "y"}], 422, "a"),
    ([{"a": 10 ** 400, "b": 0.1, "c": "y"}], 422, "a"),
    ([], 400, None),
    ([1, 2], 400, None),
    ("rows", 400, None),
])
def test_bad_records_are_json_4xx_naming_the_column(server: Server, payload: Any, status: int,
                                                    column: str | None) -> None:
    got, body = server.predict(payload)
    assert got == status, body
    assert body.get("column") == column
    if column is not None:
        assert f"`{column}`" in body["error"]


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/predict", b"{not json", 400),
    ("POST", "/predict", b'[{"a": NaN, "b": 0.1, "c": "y"}]', 400),
    ("POST", "/predict", b"\xff\xfe[]", 400),
    ("POST", "/predict", b"[" * 100_000, 400),
    ("POST", "/predict", b"[" + b"1," * 600_000 + b"1]", 413),
    ("GET", "/predict", None, 405),
    ("GET", "/nowhere", None, 404),
    ("POST", "/health", b"{}", 405),
])
def test_malformed_requests_are_json_4xx(server: Server, method: str, path: str,
                                         body: bytes | None, status: int) -> None:
    got, data = server.request(method, path, body)
    assert got == status, data
    assert "error" in json.loads(data)


def _expect_continue(port: int, size: int) -> bytes:
    """Headers of a huge body with ``Expect: 100-continue``; the body is never sent."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        return answer


def test_huge_body_is_refused_before_it_is_sent(server: Server) -> None:
    answer = _expect_continue(server.port, 500 << 20)
    assert answer.startswith(b"HTTP/1.1 413"), answer


def test_metrics_are_prometheus_text_with_drift_of_recent_inputs(server: Server,
                                                                 tmp_path: Path) -> None:
    same = _rows(make_data(tmp_path / "same.csv", 100, seed=4), 100)
    assert server.predict(same)[0] == 200
    before = server.metrics()
    assert before[("mlops_feature_drift", (("feature", "a"),))] == 0
    assert before[("mlops_drift_window_rows", ())] == 100
    shifted = _rows(make_data(tmp_path / "shifted.csv", 100, shift=3.0, seed=5), 100)
    assert server.predict(shifted)[0] == 200
    after = server.metrics()
    # the window holds the last 100 rows: all shifted in `a`, `b` and `c` unchanged
    assert after[("mlops_feature_drift", (("feature", "a"),))] == 1
    assert after[("mlops_feature_drift", (("feature", "b"),))] == 0
    assert after[("mlops_feature_drift_score", (("feature", "a"), ("method", "ks")))] < 0.05
    assert ("mlops_feature_psi", (("feature", "c"),)) in after
    ok = ("mlops_requests_total", (("endpoint", "/predict"), ("status", "200")))
    assert after[ok] >= before[ok] + 1
    predicted = sum(v for (name, _), v in after.items() if name == "mlops_predictions_total")
    assert predicted == after[("mlops_predicted_rows_total", ())] >= 200
    latency = ("mlops_request_latency_seconds_count", (("endpoint", "/predict"),))
    assert after[latency] >= after[ok]


def _malformed(rows: list[dict[str, Any]], rng: random.Random) -> tuple[bytes, dict[str, str]]:
    row = dict(rng.choice(rows))
    kind = rng.randrange(7)
    if kind == 0:
        row["a"] = "not a number"
    elif kind == 1:
        row.pop("b")
    elif kind == 2:
        row["zzz"] = 1
    elif kind == 3:
        return b'{"a": 1,', {}
    elif kind == 4:
        return b"[" + b" " * (1 << 20) + b"]", {}
    elif kind == 5:
        row["c"] = None
    else:
        return b"\x80\x81", {"Content-Type": "text/plain"}
    return json.dumps([row]).encode(), {}


def test_load_with_malformed_requests_keeps_serving_with_flat_memory(
        server: Server, tmp_path: Path) -> None:
    rows = _rows(make_data(tmp_path / "load.csv", 200, seed=6), 200)
    rng = random.Random(0)
    requests = []
    for i in range(3 * PHASE):
        if i % 3 == 0:
            requests.append((*_malformed(rows, rng), True))
        else:
            requests.append((json.dumps(rng.sample(rows, rng.randint(1, 3))).encode(), {},
                             False))
    statuses: Counter[tuple[bool, int]] = Counter()
    counting = threading.Lock()

    def send(item: tuple[bytes, dict[str, str], bool]) -> None:
        status, _ = server.request("POST", "/predict", item[0], item[1])
        with counting:
            statuses[(item[2], status)] += 1

    rss = []
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        for phase in range(3):
            list(pool.map(send, requests[phase * PHASE:(phase + 1) * PHASE]))
            rss.append(server.rss_kib())
    took = time.perf_counter() - started
    server.close_connections()
    bad = {k: v for k, v in statuses.items() if (k[0] and not 400 <= k[1] < 500)
           or (not k[0] and k[1] != 200)}
    assert not bad, statuses
    assert sum(statuses.values()) == 3 * PHASE
    # the window and the counters are bounded: after warming up, memory stays put
    assert rss[2] - rss[0] < 16 * 1024, (rss, took)
    assert server.get_json("/health")["status"] == "ok"


def test_serving_a_pipeline_follows_promotions_and_refuses_a_changed_model(
        pipeline: Path, first_run: RunRecord) -> None:
    second = run_pipeline_cli(pipeline, "-p", "C=0.01")
    store = RunStore(default_store(pipeline))
    try:
        # the latest successful run is served when nothing was promoted
        served = Server(str(pipeline), "--check-every", "0.2")
        try:
            assert served.get_json("/health")["run_id"] == second
            store.record_promotion("loop", first_run.run_id, candidate=first_run.run_id,
                                   previous=second, promoted=True, reason="test")
            wait_for(served, first_run.run_id)
            assert served.predict(_rows(pipeline.parent / "data.csv", 1))[1]["run_id"] == \
                first_run.run_id
            assert served.metrics()[("mlops_model_switches_total", ())] == 1
            # a promoted run whose model file changed after it was written is not loaded
            model_file = Path(store.run(second).folder) / "artifacts" / "train" / "model.skops"
            original = model_file.read_bytes()
            model_file.write_bytes(original + b"tampered")
            try:
                store.record_promotion("loop", second, candidate=second,
                                       previous=first_run.run_id, promoted=True,
                                       reason="test")
                deadline = time.monotonic() + 20
                while "warning" not in served.get_json("/health"):
                    assert time.monotonic() < deadline, "the changed model was not noticed"
                    time.sleep(0.1)
                health = served.get_json("/health")
                assert health["run_id"] == first_run.run_id
                assert "changed after it was written" in health["warning"]
            finally:
                model_file.write_bytes(original)
            wait_for(served, second)  # restored: the next check loads it
        finally:
            code, err = served.stop()
        assert code == 0 and "Traceback" not in err, err
    finally:
        store.close()


def test_serve_user_errors_are_one_line(pipeline: Path, tmp_path: Path) -> None:
    line = one_line_error(run_cli("serve", "nosuchrun", "-C", str(pipeline), "--port", "0"))
    assert "no run `nosuchrun`" in line
    line = one_line_error(run_cli("serve", "nosuchrun", "--port", "0", cwd=tmp_path))
    assert "not a pipeline folder" in line and "-C PIPELINE_DIR" in line
    empty = tmp_path / "copy"
    shutil.copytree(pipeline, empty, ignore=shutil.ignore_patterns(".mlops", "runs"))
    line = one_line_error(run_cli("serve", str(empty), "--port", "0"))
    assert "no run store" in line
    line = one_line_error(run_cli("serve", str(pipeline), "--model", "nope", "--port", "0"))
    assert "no model `nope`" in line and "model" in line
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        line = one_line_error(run_cli("serve", str(pipeline), "--port", port))
    assert "cannot listen" in line and port in line


def test_the_drift_window_keeps_no_long_or_broken_text() -> None:
    """A window of 1,000 rows must not hold 1,000 one-megabyte strings, nor a lone surrogate
    that breaks every later scrape."""
    import numpy as np

    from jupyter_mlops.serving.metrics import ServeMetrics
    from jupyter_mlops.serving.model import RunModel

    columns = [{"name": "c", "kind": "categorical"}, {"name": "a", "kind": "numeric"}]
    model = RunModel("r", "p", "s", "m", None, columns, {"columns": []})
    metrics = ServeMetrics(model, window=100)
    records = [{"c": "x" * 1_000_000, "a": 1.0}, {"c": "\ud800", "a": 2.0},
               {"c": "small", "a": 3.0}]
    metrics.predicted(records, np.array([0.1, 0.2, 0.3]))
    kept = list(metrics.window)
    assert sum(len(v) for row in kept for v in row if isinstance(v, str)) < 100
    assert kept[2] == ("small", 3.0) and kept[0][1] == 1.0
    for row in kept:
        row[0].encode("utf-8")  # no lone surrogate left


def test_a_lone_surrogate_in_a_request_leaves_metrics_answering(server: Server) -> None:
    rows = [{"a": 0.1 * i, "b": 0.0, "c": "\ud800"} for i in range(40)]
    status, body = server.predict(rows)
    if status == 200:  # kept in the window: every later scrape must still answer
        server.metrics()
    else:
        assert status == 422, body
    assert server.request("GET", "/metrics")[0] == 200
