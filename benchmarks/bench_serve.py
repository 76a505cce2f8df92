"""The overhead of serving: p50 and p99 latency of ``POST /predict`` with one row, against
``jupyter mlops serve`` running as its own process on loopback, / bare ``model.predict`` on
one row (a prebuilt DataFrame) in this process, with the same model loaded from the same
run. The example pipeline (churn by default) is exported and run once in a temporary
folder, or ``--pipeline DIR`` reuses one that has a run. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLI = [sys.executable, "-m", "jupyter_mlops.cli"]


def _pipeline(example: str, workdir: Path) -> Path:
    shutil.copytree(EXAMPLES / example, workdir / example)
    notebook = workdir / example / f"{example}.ipynb"
    subprocess.run([*CLI, "export", str(notebook)], check=True, capture_output=True)
    pipeline = workdir / example / f"{example}_pipeline"
    subprocess.run([*CLI, "run", str(pipeline)], check=True, capture_output=True)
    return pipeline


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    ordered = sorted(seconds)
    return (ordered[len(ordered) // 2] * 1000,
            ordered[min(len(ordered) - 1, round(len(ordered) * 0.99))] * 1000)


def _row(served: Any, run: dict[str, Any]) -> dict[str, Any]:
    """The first training row of the model's inputs, as JSON-able values."""
    from jupyter_mlops.runtime.artifacts import load
    from jupyter_mlops.serving.model import data_profiles

    names = [c["name"] for c in served.columns]
    for step, name, profile in data_profiles(run):
        if {c["name"] for c in profile["columns"]} >= set(names):
            frame = load(name, Path(run["folder"]) / "artifacts" / step)
            return json.loads(frame[names].head(1).to_json(orient="records"))[0]
    raise SystemExit("no training frame found")


def main(argv: list[str] | None = None) -> None:
    """Serve the example's model, time both ways, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--example", default="churn", choices=["churn", "diabetes"])
    parser.add_argument("--pipeline", help="a pipeline folder with a successful run")
    parser.add_argument("-n", type=int, default=2000, help="requests (and predict calls)")
    args = parser.parse_args(argv)

    import pandas as pd

    from jupyter_mlops.run.store import RunStore, default_store
    from jupyter_mlops.serving.model import load_run_model

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Path(args.pipeline) if args.pipeline else _pipeline(args.example, Path(tmp))
        store = RunStore(default_store(pipeline))
        try:
            served = load_run_model(store, store.served_run())
            run = store.run(served.run_id)
        finally:
            store.close()
        row = _row(served, run)
        frame = pd.DataFrame([row])
        server = subprocess.Popen([*CLI, "serve", str(pipeline), "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line: list[str] = []
            reader = threading.Thread(target=lambda: line.append(server.stdout.readline()),
                                      daemon=True)  # type: ignore[union-attr]
            reader.start()
            reader.join(120)
            match = re.search(r"127\.0\.0\.1:(\d+)", line[0] if line else "")
            if match is None:
                raise SystemExit("the server did not start")
            conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)))
            body = json.dumps([row]).encode()
            bare, served_times = [], []
            # the two alternate, so both see the same machine (other processes, clock)
            for i in range(args.n + 50):
                start = time.perf_counter()
                served.model.predict(frame)
                middle = time.perf_counter()
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                end = time.perf_counter()
                if response.status != 200:
                    raise SystemExit(f"/predict answered {response.status}")
                if i >= 50:  # the first ones warm both up
                    bare.append(middle - start)
                    served_times.append(end - middle)
            conn.close()
        finally:
            server.terminate()
            server.wait(30)
    p50, p99 = _percentiles(served_times)
    b50, b99 = _percentiles(bare)
    name = Path(args.pipeline).name if args.pipeline else args.example
    print(f"{name}: model `{served.name}` ({type(served.model).__name__}), "
          f"{args.n} one-row requests on loopback, one at a time")
    print(f"POST /predict: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"model.predict: p50 {b50:.2f} ms, p99 {b99:.2f} ms")
    print(f"ratio p50 {p50 / b50:.2f}, p99 {p99 / b99:.2f}; overhead p50 {p50 - b50:.2f} ms")


if __name__ == "__main__":
    main()
