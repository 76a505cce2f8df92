"""Where to run the prepare cells for ``POST /predict/raw``: in the server process, or in a
pool of warm Jupyter kernels. Latency and requests/s of both, for 1 and 100 raw churn
records per request.

The work per request is the same on both sides: the JSON body parsed and checked into a
frame (``parse_records``, ``to_frame``), ``Preparation.apply`` (the prepare cells), then
``model.predict``, the answers with None where a record was dropped. In-process, a function
of this process does it. In a kernel (``jupyter_client``, the ``python3`` kernel), the same
function was defined once, after ``load_run_model`` ran there (the pipeline's setup cells
replayed, the model and fitted values loaded); each request is an ``execute_request`` with
the body embedded in its code, the answers coming back as JSON in ``user_expressions``.

Two settings, each alternated side by side round by round (A B A B): one client sending
requests one after another (in-process against one kernel), and ``--clients`` threads at
once, their requests queued in arrival order as a server would, then taken by one thread
in-process (the server prepares on its one event-loop thread) against a pool of
``--kernels`` kernels (a thread per kernel taking the next request). The clients are
threads of this process, on the same 2 cores. Prints figures, asserts nothing.

    python benchmarks/bench_prepare_kernel.py [--seconds 5] [--rounds 3] [--clients 50]
                                                [--kernels 2]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from _serving import churn_bodies, churn_pipeline, threaded_load

from jupyter_mlops.pipeline.quoting import python_literal

#: Run once in this process and in each kernel: the run's model and preparation loaded, and
#: the function that serves one request body.
SETUP = '''
import json

from jupyter_mlops.run.store import RunStore, default_store
from jupyter_mlops.serving.inputs import parse_records, to_frame
from jupyter_mlops.serving.model import load_run_model

_store = RunStore(default_store({pipeline}))
_served = load_run_model(_store, {run_id}, pipeline_dir={pipeline})
_store.close()


def _mlops_serve(body):
    prep = _served.preparation
    frame = to_frame(parse_records(body), prep.columns, prep.required)
    prepared, dropped = prep.apply(frame)
    answers = _served.model.predict(prepared[_served.features]).tolist()
    for index in dropped:
        answers.insert(index, None)
    return answers
'''


class Kernel:
    """A warm python3 kernel holding the setup's namespace, asked one request at a time."""

    def __init__(self, root: Path, setup: str) -> None:
        from jupyter_client import KernelManager

        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(root), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        self._execute(setup, {})

    def _execute(self, code: str, expressions: dict[str, str]) -> dict[str, Any]:
        msg_id = self.client.execute(code, silent=True, store_history=False,
                                     user_expressions=expressions, allow_stdin=False)
        while True:
            reply = self.client.get_shell_msg(timeout=120)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(f"the kernel raised {content.get('ename')}: "
                               f"{content.get('evalue')}")
        return content.get("user_expressions", {})

    def serve(self, body: bytes) -> list[Any]:
        # the body as a str literal, made bytes again in the kernel (the quoting helper
        # takes no bytes)
        text = python_literal(body.decode())
        out = self._execute(f"_mlops_out = json.dumps(_mlops_serve({text}.encode()))",
                            {"out": "_mlops_out"})["out"]
        if out["status"] != "ok":
            raise RuntimeError(f"the kernel raised {out.get('ename')}: {out.get('evalue')}")
        import ast

        return json.loads(ast.literal_eval(out["data"]["text/plain"]))

    def drain(self) -> None:
        """Drop the status messages the kernel published (nobody reads them here)."""
        from queue import Empty

        while True:  # not get_msgs(): its get_msg() waits for ever when none is left
            try:
                self.client.iopub_channel.get_msg(timeout=0)
            except Empty:
                return

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def _one_client(serve: Callable[[bytes], Any], bodies: list[bytes], seconds: float
                ) -> dict[str, float]:
    """One client, requests one after another for ``seconds``."""
    return _many_clients(serve, bodies, 1, seconds)


def _many_clients(serve: Callable[[bytes], Any], bodies: list[bytes], clients: int,
                  seconds: float) -> dict[str, float]:
    """``clients`` threads sending requests at once for ``seconds``."""
    def connect() -> tuple[Callable[[bytes], bool], Callable[[], None]]:
        return (lambda body: serve(body) is not None), (lambda: None)

    return threaded_load(connect, bodies, clients, seconds)


def _queued(workers: list[Callable[[bytes], Any]]) -> tuple[Callable[[bytes], Any], Any]:
    """A server's dispatch: requests queued in arrival order, each taken by the next free
    worker thread (one per entry of ``workers``: the event loop in-process, or the thread
    that owns a kernel); ``(call, executor)``, ``call(body)`` waiting for the answer."""
    from concurrent.futures import ThreadPoolExecutor

    free: queue.Queue[Callable[[bytes], Any]] = queue.Queue()
    for worker in workers:
        free.put(worker)
    mine = threading.local()

    def take() -> None:
        mine.serve = free.get_nowait()

    def run(body: bytes) -> Any:
        return mine.serve(body)

    executor = ThreadPoolExecutor(len(workers), initializer=take)
    return (lambda body: executor.submit(run, body).result()), executor


def _compared(label: str, sides: dict[str, Callable[[], dict[str, float]]], rounds: int,
              after: Callable[[], None]) -> dict[str, float]:
    """Run the sides alternately, print each one's figures and the ratios; the medians of
    (kernel / in-process) p50 and requests/s ratios."""
    found: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, side in sides.items():
            found[name].append(side())
            after()
    for name, results in found.items():
        print(f"  {label}, {name}: {statistics.median(r['rps'] for r in results):.0f} "
              f"requests/s, p50 {statistics.median(r['p50'] for r in results):.1f} ms, p99 "
              f"{statistics.median(r['p99'] for r in results):.1f} ms")
    ours, theirs = found.values()
    figures = {}
    for key, what in (("p50", "p50"), ("rps", "requests/s")):
        ratios = [b[key] / a[key] for a, b in zip(ours, theirs, strict=True)]
        figures[key] = statistics.median(ratios)
        print(f"  {label}, kernel / in-process {what}: median {figures[key]:.2f} (min "
              f"{min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} paired rounds")
    return figures


def _faster(ratio: float) -> str:
    """Which side a kernel / in-process ratio of times favours, and by how much."""
    return f"in-process {ratio:.2f}x faster" if ratio >= 1 else \
        f"kernel {1 / ratio:.2f}x faster"


def _conclusion(found: list[tuple[int, float, float]], clients: int, kernels: int) -> str:
    """One line: per request size, which side wins alone (p50) and under load (requests/s),
    and the pick (the side that wins more of them)."""
    parts, wins = [], 0
    for size, p50, rps in found:
        parts.append(f"{size} record(s) {_faster(p50)} alone (p50), {_faster(1 / rps)} with "
                     f"{clients} clients (requests/s, {kernels} kernels vs 1 thread)")
        wins += (p50 >= 1) + (rps <= 1)
    pick = "in-process" if wins >= len(found) else "a pool of kernels"
    return f"{'; '.join(parts)}; pick {pick}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--kernels", type=int, default=2)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["JUPYTER_MLOPS_SCHEDULER"] = "off"
        pipeline, run = churn_pipeline(root)
        run_id = run.run_id
        setup = SETUP.format(pipeline=python_literal(str(pipeline)),
                             run_id=python_literal(run_id))
        namespace: dict[str, Any] = {"__name__": "__bench_setup__"}
        exec(compile(setup, "<setup>", "exec"), namespace)
        here = namespace["_mlops_serve"]
        started = time.perf_counter()
        kernels = [Kernel(root, setup) for _ in range(args.kernels)]
        print(f"{args.kernels} kernel(s) started and set up in "
              f"{time.perf_counter() - started:.1f} s")
        conclusions = []
        try:
            def drain() -> None:
                for kernel in kernels:
                    kernel.drain()

            for size in (1, 100):
                bodies = churn_bodies(root, size)
                wrong = sum(kernels[0].serve(b) != here(b) for b in bodies)
                print(f"{size} record(s)/request: the kernel's answers "
                      f"{'match' if not wrong else 'DO NOT match'} in-process ones "
                      f"({wrong} of {len(bodies)} bodies differ)")
                single = _compared("1 client", {
                    "in-process": partial(_one_client, here, bodies, args.seconds),
                    "kernel": partial(_one_client, kernels[0].serve, bodies, args.seconds),
                }, args.rounds, drain)
                one, executor = _queued([here])
                pool, pooled = _queued([kernel.serve for kernel in kernels])
                many = _compared(f"{args.clients} clients", {
                    "in-process, 1 thread": partial(_many_clients, one, bodies, args.clients,
                                                    args.seconds),
                    f"pool of {args.kernels} kernels": partial(
                        _many_clients, pool, bodies, args.clients, args.seconds),
                }, args.rounds, drain)
                executor.shutdown()
                pooled.shutdown()
                conclusions.append((size, single["p50"], many["rps"]))
        finally:
            for kernel in kernels:
                kernel.close()
    print("conclusion: " + _conclusion(conclusions, args.clients, args.kernels))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
