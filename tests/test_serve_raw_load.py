"""`POST /predict/raw` under a minute of load: 50 concurrent clients send raw churn records
(one per request, a hundred per request, records with a megabyte-long category, records
missing a column, bodies over the 1 MiB limit) to a real `jupyter mlops serve` of the churn
example, which replays its prepare cells on each and micro-batches the predictions.

Every answer is checked, not only its status: each request's predictions must be exactly
those the notebook's preparation and the run's model give for its own records (computed here
by hand, as in test_serve_raw), so a batch that mixed up two requests' rows would fail.
/health and /metrics keep answering within seconds, nothing gets a 5xx, and the server's
memory stays bounded. About 85 s: 15 s to build and run the pipeline, 60 s of load.
"""

from __future__ import annotations

import json
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from conftest import EXAMPLES
from test_serve_load import (
    ANSWER_WITHIN,
    MAX_GROWTH_KIB,
    WARM_UP_SECONDS,
    ServeProcess,
    post_until,
)
from test_serve_raw import by_hand, cli, raw_rows, records

from jupyter_mlops.run.store import RunStore, default_store

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

CLIENTS = 50
LOAD_SECONDS = 60.0


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]],
                                                             list[Any]]:
    """The churn example exported and run; its raw records and the predictions by hand."""
    root = tmp_path_factory.mktemp("rawload")
    shutil.copytree(EXAMPLES / "churn", root / "churn")
    cli("export", root / "churn" / "churn.ipynb", "-o", root / "pipe")
    cli("run", root / "pipe")
    store = RunStore(default_store(root / "pipe"))
    try:
        run = store.runs()[0]
    finally:
        store.close()
    raw = raw_rows(root)
    return root, records(raw), by_hand(raw, run)


@pytest.fixture(scope="module")
def server(churn: tuple[Path, list[dict[str, Any]], list[Any]]) -> Iterator[ServeProcess]:
    root = churn[0]
    served = ServeProcess(root / "pipe", root / "serve.log")
    yield served
    code, log = served.stop()
    assert code == 0, log
    assert "Traceback" not in log, log[-3000:]


def _request(rows: list[dict[str, Any]], expected: list[Any], rng: random.Random
             ) -> tuple[bytes, int, list[Any] | None]:
    """A body, the status it must get, and the predictions it must get (for a 200)."""
    kind = rng.randrange(20)
    if kind < 12:  # one record
        i = rng.randrange(len(rows))
        return json.dumps([rows[i]]).encode(), 200, [expected[i]]
    if kind < 16:  # a hundred records from anywhere in the file
        picked = rng.sample(range(len(rows)), 100)
        return json.dumps([rows[i] for i in picked]).encode(), 200, [expected[i] for i in
                                                                      picked]
    if kind < 17:  # a megabyte-long payment method: an unknown category, ignored by the model
        i = rng.randrange(len(rows))
        record = {**rows[i], "payment_method": "z" * 900_000}
        return json.dumps([record]).encode(), 200, None
    if kind < 19:  # no region: the model needs it
        record = dict(rows[rng.randrange(len(rows))])
        del record["region"]
        return json.dumps([record]).encode(), 422, None
    return json.dumps([{**rows[0], "customer_id": "y" * (1 << 20)}]).encode(), 413, None


def _client(port: int, number: int, deadline: float, churn: tuple[Any, Any, Any],
            statuses: Counter[tuple[int, int]], failures: list[str], lock: threading.Lock
            ) -> None:
    """Post raw bodies until ``deadline``; each 200 must hold its own records' predictions."""
    _, rows, expected = churn
    rng = random.Random(number)

    def check(data: bytes, predictions: list[Any] | None) -> str | None:
        got = json.loads(data)["predictions"]
        # a record the preparation drops (no total_charges) is None both ways
        return None if predictions is None or got == predictions else \
            f"wanted {predictions}, got {got}"

    post_until(port, "/predict/raw", deadline, lambda: _request(rows, expected, rng), check,
               statuses, failures, lock)


def test_a_minute_of_raw_records_gets_each_request_its_own_predictions(
        server: ServeProcess, churn: tuple[Any, Any, Any]) -> None:
    statuses: Counter[tuple[int, int]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    idle = server.rss_kib()
    start = time.monotonic()
    deadline = start + LOAD_SECONDS
    clients = [threading.Thread(target=_client, daemon=True, args=(
        server.port, n, deadline, churn, statuses, failures, lock)) for n in range(CLIENTS)]
    for thread in clients:
        thread.start()
    rss: list[tuple[float, int]] = []
    slowest = 0.0
    while time.monotonic() < deadline:
        for path in ("/health", "/metrics"):
            status, _, took = server.get(path, timeout=ANSWER_WITHIN + 5)
            assert status == 200, (path, status)
            slowest = max(slowest, took)
        rss.append((time.monotonic() - start, server.rss_kib()))
        time.sleep(0.5)
    for thread in clients:
        thread.join(90)
    assert not any(thread.is_alive() for thread in clients), "a client is stuck"
    summary = f"statuses {dict(statuses)}; rss idle {idle} KiB, (s, KiB) {rss[::10]}"
    print(summary)
    assert not failures, (failures[:3], summary)
    assert not [k for k in statuses if k[1] >= 500], summary
    assert statuses[(200, 200)] >= 200 and statuses[(422, 422)] >= 5, summary
    assert slowest < ANSWER_WITHIN, (slowest, summary)
    baseline = max(kib for t, kib in rss if t <= WARM_UP_SECONDS)
    peak = max(kib for t, kib in rss if t > WARM_UP_SECONDS)
    assert peak - baseline < MAX_GROWTH_KIB, (baseline, peak, summary)


def test_the_expected_predictions_are_not_all_alike(churn: tuple[Any, Any, Any]) -> None:
    """The check above means something: the by-hand predictions hold both classes and the
    records the preparation drops."""
    expected = churn[2]
    assert {0, 1, None} <= set(expected)
    assert pd.Series([e for e in expected if e is not None]).value_counts().min() > 50
