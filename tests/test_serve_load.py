"""`jupyter mlops serve` under a minute of load with megabyte-long text: 50 concurrent clients
post /predict bodies whose categorical column holds 1 MB strings (and some bodies just over
the 1 MiB limit); /health and /metrics keep answering within seconds, no request gets a 5xx,
and the server's memory stays bounded.

It runs in CI with the rest of the suite: about 80 s on two cores (13 s to build and run the
pipeline, 60 s of load, a few seconds to start and stop the server).
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from loop_helpers import build_pipeline
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(300)]

CLIENTS = 50
LOAD_SECONDS = 60.0
WARM_UP_SECONDS = 10.0
"""Memory is compared with its level once this much of the load has run (buffers, the
allocator's arenas and the drift window have reached their working size by then)."""
MAX_GROWTH_KIB = 150 * 1024
ANSWER_WITHIN = 5.0
"""Seconds /health and /metrics may take to answer during the load."""
WINDOW = 1000
STRING = 1_000_000
"""Characters of the long string in one record: the body stays just under the 1 MiB limit."""


class ServeProcess:
    """``jupyter mlops serve PIPELINE --port 0``, its log in a file (a pipe nobody reads
    would fill up and stop the server), and where it listens."""

    def __init__(self, pipeline: Path, log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlops.cli", "serve", str(pipeline), "--port", "0",
             "--window", str(WINDOW)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "Serving model" in line, line + log.read_text()
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])

    def get(self, path: str, timeout: float) -> tuple[int, bytes, float]:
        """One GET on a new connection: (status, body, seconds it took)."""
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, response.read(), time.perf_counter() - started
        finally:
            conn.close()

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def stop(self) -> tuple[int | None, str]:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return self.proc.returncode, Path(self.log.name).read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("load")
    served = ServeProcess(build_pipeline(root), root / "serve.log")
    yield served
    code, log = served.stop()
    assert code == 0, log  # a SIGTERM ends it cleanly, even after the load
    assert "Traceback" not in log, log[-3000:]


def _body(client: int, serial: int) -> tuple[bytes, int]:
    """A /predict body and the status it must get: mostly one record whose `c` is a 1 MB
    string (200: the encoder ignores an unknown category), some with four 250 kB strings,
    and some just over the 1 MiB limit (413). Each string is new, so none is shared."""
    tag = f"{client}-{serial}-".encode()
    kind = serial % 10
    if kind < 7:
        text = tag + b"x" * STRING
        return b'[{"a": 0.25, "b": -1.5, "c": "' + text + b'"}]', 200
    if kind < 9:
        rows = [b'{"a": %d, "b": 0.5, "c": "' % i + tag + b"\xc3\xa9" * (STRING // 8) + b'"}'
                for i in range(4)]
        return b"[" + b", ".join(rows) + b"]", 200
    return b'[{"a": 0.25, "b": -1.5, "c": "' + b"y" * (1 << 20) + b'"}]', 413


def post_until(port: int, path: str, deadline: float,
               next_body: Callable[[], tuple[bytes, int, Any]],
               check: Callable[[bytes, Any], str | None], statuses: Counter[tuple[int, int]],
               failures: list[str], lock: threading.Lock) -> None:
    """Post bodies from ``next_body`` (body, status it must get, what ``check`` is given) on
    one keep-alive connection until ``deadline``; count (expected, got) statuses, and note a
    failure for a wrong status, a failed connection (but for a 413's), or what ``check``
    says of a 200's body."""
    conn: http.client.HTTPConnection | None = None
    while time.monotonic() < deadline:
        body, expected, extra = next_body()
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as err:
            # a 413 may close the connection while the body is still being sent
            if conn is not None:
                conn.close()
            conn = None
            with lock:
                statuses[(expected, -1)] += 1
                if expected != 413:
                    failures.append(f"{type(err).__name__}: {err}")
            continue
        wrong = f"{response.status}: {data[:200]!r}" if response.status != expected else (
            check(data, extra) if expected == 200 else None)
        with lock:
            statuses[(expected, response.status)] += 1
            if wrong:
                failures.append(wrong)
    if conn is not None:
        conn.close()


def _client(port: int, number: int, deadline: float, statuses: Counter[tuple[int, int]],
            failures: list[str], lock: threading.Lock) -> None:
    """Post /predict bodies of megabyte strings until ``deadline``."""
    serial = iter(range(1 << 30))

    def next_body() -> tuple[bytes, int, None]:
        return (*_body(number, next(serial)), None)

    post_until(port, "/predict", deadline, next_body, lambda data, extra: None, statuses,
               failures, lock)


def _metric(text: bytes, name: str) -> float:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name} in /metrics")


def test_a_minute_of_megabyte_strings_keeps_serving_with_bounded_memory(
        server: ServeProcess) -> None:
    """About 65 s: 50 clients for 60 s, /health and /metrics polled throughout."""
    statuses: Counter[tuple[int, int]] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    idle = server.rss_kib()
    start = time.monotonic()
    deadline = start + LOAD_SECONDS
    clients = [threading.Thread(target=_client, daemon=True,
                                args=(server.port, n, deadline, statuses, failures, lock))
               for n in range(CLIENTS)]
    for thread in clients:
        thread.start()
    rss: list[tuple[float, int]] = []
    probes: list[tuple[float, str, int, float]] = []
    while time.monotonic() < deadline:
        for path in ("/health", "/metrics"):
            try:
                status, _, took = server.get(path, timeout=ANSWER_WITHIN + 5)
            except (OSError, http.client.HTTPException) as err:
                status, took = -1, float("inf")
                failures.append(f"{path}: {type(err).__name__}: {err}")
            probes.append((time.monotonic() - start, path, status, took))
        rss.append((time.monotonic() - start, server.rss_kib()))
        time.sleep(0.5)
    for thread in clients:
        thread.join(90)
    assert not any(thread.is_alive() for thread in clients), "a client is stuck"
    after = server.rss_kib()

    summary = (f"statuses {dict(statuses)}; rss idle {idle} KiB, then (s, KiB) {rss[::10]}; "
               "slowest probes "
               f"{sorted(probes, key=lambda p: -p[3])[:5]}")
    print(summary)  # shown with -s, and with a failure
    served = sum(n for (expected, got), n in statuses.items() if got == expected == 200)
    assert served >= 100, summary  # the load was real
    assert not [k for k in statuses if k[1] >= 500], summary
    assert not failures, (failures[:5], summary)
    # /health and /metrics answered 200, each within a few seconds, all along
    assert all(status == 200 for _, _, status, _ in probes), summary
    assert max(took for _, _, _, took in probes) < ANSWER_WITHIN, summary
    # memory: bounded after the warm-up, and after the load
    baseline = max(kib for t, kib in rss if t <= WARM_UP_SECONDS)
    peak = max(kib for t, kib in rss if t > WARM_UP_SECONDS)
    assert peak - baseline < MAX_GROWTH_KIB, (baseline, peak, summary)
    assert after - baseline < MAX_GROWTH_KIB, (baseline, after, summary)
    # and the warm-up itself holds no window of long strings (1,000 x 1 MB would be 1 GB)
    assert peak - idle < 2 * MAX_GROWTH_KIB, (idle, peak, summary)
    # and the server is at rest and whole: quick answers, the window at its bound
    status, body, took = server.get("/health", timeout=ANSWER_WITHIN)
    assert status == 200 and json.loads(body)["status"] == "ok" and took < 1.0, (status, took)
    status, body, took = server.get("/metrics", timeout=ANSWER_WITHIN)
    assert status == 200 and took < ANSWER_WITHIN, (status, took)
    assert _metric(body, "mlops_drift_window_rows") == WINDOW
    assert _metric(body, "mlops_predicted_rows_total") >= served
