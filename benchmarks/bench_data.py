"""Big frames between steps: `jupyter mlops run` against `papermill` of the same notebook.

A generated notebook of three steps: `build` makes a frame of N rows x 20 columns (12
floats, 2 integers, 3 strings, 2 categories, a datetime) marked `%%mlops data`; `features`
derives columns from it; `fit` fits a linear model on a 50,000-row sample and records its
R^2. The notebook is run once under papermill to capture its data profile (so the pipeline
checks the frame against it), exported, then the pipeline run (`--force`) and papermill of
the notebook are timed alternately, A B A B, as whole processes.

Printed per N: the wall-time ratio and the peak-RSS ratio (all processes of each side,
sampled every 50 ms), each as the median and min-max over the paired rounds, with the load
average; the bytes the run wrote (artifacts, executed notebooks) against the frame's size in
memory; and per step of the last run the time its kernel spent loading inputs, saving
outputs and in the data and metrics cells, which hold the checks, against the same cells
under papermill (where the magics profile the frame instead of checking it).

Usage: python benchmarks/bench_data.py [N ...] [--repeat R]   (default: 1000000 5000000, R=2)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import nbformat
from _timing import paired, ratio_line

CELLS = (
    "%load_ext jupyter_mlops\nimport numpy as np\nimport pandas as pd\n"
    "from sklearn.linear_model import LinearRegression",
    "%%mlops params\nn_rows = 1000\nseed = 0",
    "%%mlops step build\nrng = np.random.default_rng(seed)\n"
    "columns = {f'x{i}': rng.normal(size=n_rows) for i in range(12)}\n"
    "columns['count'] = rng.integers(0, 1000, size=n_rows)\n"
    "columns['age'] = rng.integers(18, 90, size=n_rows)\n"
    "words = np.array(['alpha', 'beta', 'gamma', 'delta', 'epsilon'])\n"
    "columns['word'] = words[rng.integers(0, 5, size=n_rows)]\n"
    "columns['code'] = np.char.add('c', rng.integers(0, 500, size=n_rows).astype(str))\n"
    "columns['note'] = words[rng.integers(0, 5, size=n_rows)]\n"
    "columns['city'] = pd.Categorical.from_codes(rng.integers(0, 8, size=n_rows), "
    "[f'city{i}' for i in range(8)])\n"
    "columns['tier'] = pd.Categorical.from_codes(rng.integers(0, 3, size=n_rows), "
    "['low', 'mid', 'high'])\n"
    "columns['when'] = pd.Timestamp('2024-01-01') + pd.to_timedelta("
    "rng.integers(0, 86400 * 365, size=n_rows), unit='s')",
    "%%mlops data df\ndf = pd.DataFrame(columns)\ndel columns",
    "%%mlops step features\ndf['x_sum'] = df[[f'x{i}' for i in range(12)]].sum(axis=1)\n"
    "df['age_band'] = (df['age'] // 10).astype('int8')\n"
    "noise = np.random.default_rng(seed + 1).normal(size=len(df))\n"
    "target = df['x0'] * 2 + df['x1'] - df['age'] / 50 + noise * 0.1",
    "%%mlops step fit\nsample = df.sample(min(50_000, len(df)), random_state=seed)\n"
    "X = sample[[f'x{i}' for i in range(12)] + ['age', 'age_band']]\n"
    "model = LinearRegression().fit(X, target.loc[sample.index])",
    "%%mlops metrics\nr2 = float(model.score(X, target.loc[sample.index]))\nprint('r2', r2)",
)


def _notebook(folder: Path, rows: int) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cells = list(CELLS)
    cells[1] = f"%%mlops params\nn_rows = {rows}\nseed = 0"
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / "data.ipynb"
    nbformat.write(nb, str(path))
    return path


def _seconds(cell: dict) -> float:
    execution = cell.get("metadata", {}).get("execution", {})
    start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
    if not (start and end):
        return 0.0
    return (datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()


def _breakdown(notebook: Path) -> dict[str, float]:
    """Seconds in the cells that load inputs, save outputs, and the data/metrics cells."""
    parts = {"load": 0.0, "save": 0.0, "data/metrics cells": 0.0}
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        if cell.get("id") == "mlops-inputs":
            parts["load"] += _seconds(cell)
        elif cell.get("id") == "mlops-outputs":
            parts["save"] += _seconds(cell)
        elif source.startswith(("%%mlops data", "%%mlops metrics")):
            parts["data/metrics cells"] += _seconds(cell)
    return parts


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def bench(rows: int, repeat: int) -> None:
    """Time and measure both sides at ``rows`` rows; print the figures."""
    with tempfile.TemporaryDirectory(prefix="mlops-bench-data-") as tmp:
        work = Path(tmp)
        notebook = _notebook(work, rows)
        env_capture = {"JUPYTER_MLOPS_QUIET": "1"}
        papermill = [sys.executable, "-m", "papermill", str(notebook), str(work / "out.ipynb"),
                     "--cwd", str(work), "--no-progress-bar"]
        subprocess.run(papermill, check=True, capture_output=True,
                       env={**os.environ, **env_capture})
        cli = [sys.executable, "-m", "jupyter_mlops.cli"]
        subprocess.run([*cli, "export", str(notebook)], check=True, capture_output=True)
        pipeline = work / "data_pipeline"
        runs = work / "runs"
        ours = [*cli, "run", str(pipeline), "--force", "--runs-dir", str(runs)]
        results = paired({"pipeline": ours, "papermill": papermill}, repeat, cwd=tmp)
        frame = subprocess.run(
            [sys.executable, "-W", "ignore", "-c", "import sys; "
             "from jupyter_mlops.runtime.artifacts import load; "
             "print(load('df', sys.argv[1]).memory_usage(deep=True).sum())",
             str(next(runs.glob("*/artifacts/build/df.arrow")).parent)],
            check=True, capture_output=True, text=True).stdout.strip()
        last = sorted(runs.iterdir())[-1]
        written = _size(last)
        print(f"N = {rows:,}")
        for label, index in (("wall", 0), ("peak RSS", 1)):
            print("  " + ratio_line(f"{label} ratio (pipeline / papermill)",
                                    [r[index] for r in results["pipeline"]],
                                    [r[index] for r in results["papermill"]]))
        wall = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
        peak = {k: max(r[1] for r in v) / 1e9 for k, v in results.items()}
        print(f"  wall: pipeline {wall['pipeline']:.1f} s, papermill {wall['papermill']:.1f} s;"
              f" peak RSS: pipeline {peak['pipeline']:.2f} GB, papermill "
              f"{peak['papermill']:.2f} GB")
        print(f"  written by one run: {written / 1e6:.0f} MB; the frame in memory: "
              f"{int(frame) / 1e6:.0f} MB (ratio {written / int(frame):.2f})")
        baseline = _breakdown(work / "out.ipynb")
        print(f"  papermill: data/metrics cells {baseline['data/metrics cells']:.2f} s")
        for step in sorted((last / "steps").glob("*.ipynb")):
            parts = _breakdown(step)
            print(f"  {step.stem}: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))


def main() -> None:
    """Parse the sizes, run each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", type=int, default=[1_000_000, 5_000_000])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    for rows in args.rows:
        bench(rows, args.repeat)


if __name__ == "__main__":
    main()
