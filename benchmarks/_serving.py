"""What the serving benchmarks share: the churn example exported and run, request bodies of
its raw records, and clients that send them from threads for a while, with the figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def churn_pipeline(root: Path) -> tuple[Path, Any]:
    """The churn example copied to ``root/churn``, exported to ``root/p`` and run once: the
    pipeline's folder and its run's record."""
    from jupyter_mlops.run.store import RunStore, default_store

    shutil.copytree(EXAMPLES / "churn", root / "churn")
    subprocess.run([*CLI, "export", str(root / "churn" / "churn.ipynb"), "-o", str(root / "p")],
                   check=True, capture_output=True)
    subprocess.run([*CLI, "run", str(root / "p")], check=True, capture_output=True)
    store = RunStore(default_store(root / "p"))
    try:
        return root / "p", store.runs()[0]
    finally:
        store.close()


def churn_bodies(root: Path, size: int, *, complete: bool = False) -> list[bytes]:
    """Request bodies of ``size`` raw churn records each, from the first 1,000 rows; with
    ``complete``, only rows the preparation keeps (a ``total_charges``)."""
    import pandas as pd

    raw = pd.read_csv(root / "churn" / "data" / "churn.csv").drop(columns=["churned"])
    if complete:
        raw = raw[raw["total_charges"].notna()]
    records = json.loads(raw.to_json(orient="records"))
    return [json.dumps(records[i:i + size]).encode() for i in range(0, 1000, max(size, 7))]


def percentile(values: list[float], share: float) -> float:
    """The value at ``share`` (0 to 1) of the sorted values, the nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def figures(latencies: list[float], seconds: float, errors: int = 0) -> dict[str, float]:
    """Requests per second over ``seconds``, p50 and p99 in ms, and the errors."""
    return {"rps": len(latencies) / seconds, "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000, "errors": errors}


def threaded_load(connect: Callable[[], tuple[Callable[[bytes], bool], Callable[[], None]]],
                  bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads, each with what ``connect()`` gives it (a send that says whether
    the answer was right, and a close), sending the bodies in turn for ``seconds``."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        send, close = connect()
        mine, wrong, n = [], 0, index
        while time.monotonic() < stop:
            began = time.perf_counter()
            ok = send(bodies[n % len(bodies)])
            mine.append(time.perf_counter() - began)
            wrong += not ok
            n += clients
        close()
        latencies.extend(mine)
        errors[0] += wrong

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return figures(latencies, time.perf_counter() - began, errors[0])
