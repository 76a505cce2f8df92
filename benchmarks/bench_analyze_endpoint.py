"""Round trip of POST /mlops/analyze for a generated 1,000-cell notebook, against a real
``jupyter server`` on loopback. Target: median <= 100 ms.

Baseline in the same run: GET /api/contents of the same notebook (the server reading and
validating it), so the ratio says what our analysis adds to a plain notebook fetch.
"""

from __future__ import annotations

import json
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import nbformat
from bench_export import generated_notebook


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _median_ms(request: urllib.request.Request, repeat: int = 25,
               before: Callable[[int], None] | None = None) -> float:
    times = []
    for i in range(repeat + 2):
        if before is not None:
            before(i)
        start = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[2:])  # the first two warm caches and imports


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        generated_notebook(Path(tmp) / "big.ipynb")
        port, token = _port(), secrets.token_hex(8)
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", f"--port={port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp}",
             "--ServerApp.allow_root=True", "--no-browser"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"token {token}"}
            for _ in range(200):
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            analyze = urllib.request.Request(
                f"{base}/mlops/analyze", method="POST", headers=headers,
                data=json.dumps({"path": "big.ipynb"}).encode())
            contents = urllib.request.Request(f"{base}/api/contents/big.ipynb", headers=headers)
            ours, baseline = _median_ms(analyze), _median_ms(contents)
            path = Path(tmp) / "big.ipynb"
            nb = nbformat.read(str(path), as_version=4)

            def edit(i: int) -> None:  # the save after editing one cell, as in JupyterLab
                nb.cells[500].source = f"x_500 = x_499 + {i}"
                nbformat.write(nb, str(path))

            edited = _median_ms(analyze, before=edit)
        finally:
            server.terminate()
            server.wait(20)
    verdict = "meets" if ours <= 100 else "misses"
    print(f"analyze endpoint, 1,000-cell notebook: median {ours:.1f} ms ({verdict} target "
          f"<= 100 ms); after an edit of one cell {edited:.1f} ms; GET /api/contents of it "
          f"{baseline:.1f} ms; ratio {ours / baseline:.2f}")


if __name__ == "__main__":
    main()
