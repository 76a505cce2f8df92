"""How much a production image carries: the authoring tool against the kernel runtime.

A Kubeflow image (or an Airflow worker) used to install jupyter-mlops itself with papermill
and ipykernel; it now installs the kernel runtime wheel (with its Parquet and skops extras)
with papermill and ipykernel. Each side is installed into a new virtual environment of this
Python from the package registry (pip's cache makes the second run quick), and the script
prints the number of distributions each holds (pip, setuptools and wheel not counted) and
the size of its site-packages, with the runtime's share of the tool's. Not a timing: what
is measured does not depend on the machine's load.

Usage: python benchmarks/bench_image.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from jupyter_mlops.deploy.runtime_wheel import build_runtime_wheel

_BASE = {"pip", "setuptools", "wheel"}


def _tool_requirements() -> list[str]:
    """What ``pip install jupyter-mlops`` installs besides itself (its own files are a few
    hundred kilobytes, and it cannot be installed from this tree without Node.js)."""
    required = metadata.requires("jupyter-mlops") or []
    return [r for r in required if "extra ==" not in r]


def _measure(folder: Path, requirements: list[str]) -> tuple[int, int]:
    """(distributions, bytes of site-packages) of a new venv with ``requirements``."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    *requirements], check=True)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json",
                             "--disable-pip-version-check"], check=True, capture_output=True,
                            text=True).stdout
    count = sum(1 for p in json.loads(listed) if p["name"].lower() not in _BASE)
    site = next((folder / "lib").glob("python3*/site-packages"))
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    return count, size


def main() -> None:
    """Install both sides, print the figures."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-image-") as tmp:
        root = Path(tmp)
        wheel = build_runtime_wheel(root / "wheel")
        common = ["papermill", "ipykernel"]
        sides = {
            "authoring tool": [*_tool_requirements(), *common],
            "kernel runtime": [f"{wheel}[arrow,models]", *common],
        }
        figures = {}
        for name, requirements in sides.items():
            figures[name] = _measure(root / re.sub(r"\W+", "-", name), requirements)
            count, size = figures[name]
            print(f"{name:15} {count:4d} distributions  {size / 1e6:8.1f} MB")
        (tool_count, tool_size), (run_count, run_size) = figures.values()
        print(f"runtime / tool: distributions {run_count / tool_count:.2f}, "
              f"size {run_size / tool_size:.2f}")
        print(f"python {sys.version.split()[0]}, load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
