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
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _serving import CLI, churn_bodies, churn_pipeline, figures, threaded_load

SETTINGS = {"alone": ["--batch-window", "0"], "batched": [],
            "batched, 2 workers": ["--workers", "2"]}


def _load(port: int, bodies: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """``clients`` threads posting to ``/predict/raw``, each on a keep-alive connection."""
    def connect() -> tuple[Any, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def send(body: bytes) -> bool:
            conn.request("POST", "/predict/raw", body=body)
            response = conn.getresponse()
            response.read()
            return response.status == 200

        return send, conn.close

    return threaded_load(connect, bodies, clients, seconds)


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
    return figures(times, sum(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["JUPYTER_MLOPS_SCHEDULER"] = "off"
        pipeline, _ = churn_pipeline(Path(tmp))
        for size in (1, 100):
            bodies = churn_bodies(Path(tmp), size, complete=True)
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
