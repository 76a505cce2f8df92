"""Serving throughput: requests/s and latency of ``POST /predict/raw`` under 50 concurrent
clients, for 1 and 100 raw churn records per request, against the same work (the prepare
cells and ``model.predict``) called in a plain loop in one process.

Server settings compared, alternated round by round (A B C A B C): each request predicted
alone (``--batch-window 0``, the server before micro-batching), micro-batching (2 ms, the
default), and micro-batching with ``--workers 2``. The clients are threads of this process on
the same 2 cores, so every figure includes their cost too. Prints figures, asserts nothing.

    python benchmarks/bench_throughput.py [--seconds 10] [--rounds 2] [--clients 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]
SETTINGS = {"alone": ["--batch-window", "0"], "batched": [],
            "batched, 2 workers": ["--workers", "2"]}


def _pipeline(root: Path) -> Path:
    shutil.copytree(EXAMPLES / "churn", root / "churn")
    subprocess.run([*CLI, "export", str(root / "churn" / "churn.ipynb"), "-o", str(root / "p")],
                   check=True, capture_output=True)
    subprocess.run([*CLI, "run", str(root / "p")], check=True, capture_output=True)
    return root / "p"


def _bodies(root: Path, size: int) -> list[bytes]:
    import pandas as pd

    raw = pd.read_csv(root / "churn" / "data" / "churn.csv").drop(columns=["churned"])
    raw = raw[raw["total_charges"].notna()]
    records = json.loads(raw.to_json(orient="records"))
    return [json.dumps(records[i:i + size]).encode() for i in range(0, 1000, max(size, 7))]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, n = [], index
        while time.monotonic() < stop:
            body = bodies[n % len(bodies)]
            n += clients
            began = time.perf_counter()
            conn.request("POST", "/predict/raw", body=body)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - began)
            if response.status != 200:
                errors[0] += 1
        conn.close()
        latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.perf_counter() - began
    return {"rps": len(latencies) / took, "p50": _percentile(latencies, 0.5) * 1000,
            "p99": _percentile(latencies, 0.99) * 1000, "errors": errors[0]}


def _served(pipeline: Path, extra: list[str]) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([*CLI, "serve", str(pipeline), "--port", "0", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()  # type: ignore[union-attr]
    return process, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def _loop(pipeline: Path, bodies: list[bytes], seconds: float) -> dict[str, float]:
    """The same work without a server: records checked, prepared, predicted, in a loop."""
    from jupyter_mlops.run.store import RunStore, default_store
    from jupyter_mlops.serving.inputs import parse_records, to_frame
    from jupyter_mlops.serving.model import load_run_model

    store = RunStore(default_store(pipeline))
    served = load_run_model(store, store.runs()[0].run_id, pipeline_dir=pipeline)
    store.close()
    prep, times, n = served.preparation, [], 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        began = time.perf_counter()
        frame = to_frame(parse_records(bodies[n % len(bodies)]), prep.columns, prep.required)
        prepared, _ = prep.apply(frame)
        served.model.predict(prepared[served.features])
        times.append(time.perf_counter() - began)
        n += 1
    return {"rps": len(times) / sum(times), "p50": _percentile(times, 0.5) * 1000,
            "p99": _percentile(times, 0.99) * 1000, "errors": 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_MLOPS_SCHEDULER"] = "off"
        pipeline = _pipeline(Path(tmp))
        for size in (1, 100):
            bodies = _bodies(Path(tmp), size)
            base = _loop(pipeline, bodies, args.seconds)
            print(f"{size} record(s)/request, plain loop in one process: {base['rps']:.0f} "
                  f"requests/s, p50 {base['p50']:.1f} ms, p99 {base['p99']:.1f} ms")
            found: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
            for _ in range(args.rounds):
                for name, extra in SETTINGS.items():
                    process, port = _served(pipeline, extra)
                    try:
                        found[name].append(_load(port, bodies, args.clients, args.seconds))
                    finally:
                        process.terminate()
                        process.wait(30)
            for name, results in found.items():
                rps = statistics.median(r["rps"] for r in results)
                print(f"  served ({name}), {args.clients} clients: {rps:.0f} requests/s "
                      f"({rps / base['rps']:.2f} of the loop), p50 "
                      f"{statistics.median(r['p50'] for r in results):.0f} ms, p99 "
                      f"{statistics.median(r['p99'] for r in results):.0f} ms, errors "
                      f"{sum(r['errors'] for r in results)}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
