"""A small real pipeline for the serve, monitor and retrain tests: a notebook run once with
papermill (capturing its contract), exported, and run; plus data that drifts on request."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from conftest import run_capturing, run_cli, write_notebook
from prometheus_client.parser import text_string_to_metric_families

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport pandas as pd\nfrom sklearn.compose import ColumnTransformer\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\n"
    "from sklearn.pipeline import make_pipeline\n"
    "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
    "%%mlops params\ndata_path = 'data.csv'  # the table to learn from\nC = 1.0  # regularisation",
    "%%mlops step prepare\ndf = pd.read_csv(data_path)\nfeatures = ['a', 'b', 'c']",
    "%%mlops data X_train X_test y_train y_test\nX_train, X_test, y_train, y_test = "
    "train_test_split(df[features], df['label'], test_size=0.3, random_state=0)",
    "%%mlops step train\nprep = ColumnTransformer([('num', StandardScaler(), ['a', 'b']), "
    "('cat', OneHotEncoder(handle_unknown='ignore'), ['c'])])",
    "%%mlops model model\nmodel = make_pipeline(prep, LogisticRegression(C=C)).fit(X_train, "
    "y_train)",
    "%%mlops step evaluate\npredicted = model.predict(X_test)",
    "%%mlops metrics accuracy\naccuracy = float((predicted == y_test).mean())",
)
FEATURES = ("a", "b", "c")


def make_data(path: Path, rows: int = 600, *, shift: float = 0.0, noise: float = 0.5,
              random_labels: bool = False, seed: int = 0) -> Path:
    """Rows of a (numeric, drifts by ``shift``), b (numeric), c (category) and a 0/1 label
    that follows them up to ``noise`` (or is a coin toss)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1, rows)
    b = rng.normal(0, 1, rows)
    c = rng.choice(["x", "y", "z"], rows)
    score = (a - shift) + 0.5 * b + np.where(c == "x", 0.8, 0.0) + rng.normal(0, noise, rows)
    label = rng.integers(0, 2, rows) if random_labels else (score > 0.3).astype(int)
    pd.DataFrame({"a": a, "b": b, "c": c, "label": label}).to_csv(path, index=False)
    return path


def build_pipeline(root: Path) -> Path:
    """The notebook run once (its contract captured), exported, and run once."""
    make_data(root / "data.csv")
    notebook = write_notebook(root / "loop.ipynb", *CELLS)
    run_capturing(notebook, root)
    done = run_cli("export", str(notebook))
    assert done.returncode == 0, done.stderr
    pipeline = root / "loop_pipeline"
    run_pipeline_cli(pipeline)
    return pipeline


def run_pipeline_cli(pipeline: Path, *args: str) -> str:
    """`jupyter mlops run` as a user runs it; the new run's id."""
    done = run_cli("run", str(pipeline), "-j", "1", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^Run (\S+) succeeded", done.stdout, re.M)
    assert match, done.stdout
    return match.group(1)


def one_line_error(done: object) -> str:
    """The single stderr line of a CLI user error (exit 2), checked to be one line."""
    assert done.returncode == 2, (done.stdout, done.stderr)  # type: ignore[attr-defined]
    lines = done.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr  # type: ignore
    return lines[0]


class Server:
    """A `jupyter mlops serve` process and an HTTP client for it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter_mlops.cli", "serve", *args, "--port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self._first_line(60)
        assert "Serving model" in line, line + self.proc.stderr.read()  # type: ignore
        self.port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        self.local = threading.local()
        self.connections: list[http.client.HTTPConnection] = []

    def _first_line(self, timeout: float) -> str:
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.proc.stdout.readline()),
                                  daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        return found[0] if found else ""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request on this thread's keep-alive connection (a new one if it closed)."""
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                                    timeout=30)
                self.connections.append(conn)
            try:
                conn.request(method, path, body=body, headers=headers or {})
                response = conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    self.local.conn = None
                return response.status, data
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def predict(self, payload: Any) -> tuple[int, dict[str, Any]]:
        status, data = self.request("POST", "/predict", json.dumps(payload).encode())
        return status, json.loads(data)

    def get_json(self, path: str) -> dict[str, Any]:
        status, data = self.request("GET", path)
        assert status == 200, data
        return json.loads(data)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, data = self.request("GET", "/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(data.decode())
                for s in family.samples}

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def close_connections(self) -> None:
        """Close every client connection, of every thread."""
        for conn in self.connections:
            conn.close()
        self.connections.clear()
        self.local = threading.local()

    def stop(self) -> tuple[int, str]:
        self.close_connections()
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def wait_for(server: Server, run_id: str) -> None:
    """Wait until the server says it serves ``run_id``."""
    deadline = time.monotonic() + 30
    while server.get_json("/health")["run_id"] != run_id:
        assert time.monotonic() < deadline, f"the server did not switch to {run_id}"
        time.sleep(0.1)
