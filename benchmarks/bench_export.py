"""Export of a generated 1,000-cell notebook / `jupyter nbconvert --to script` of it.

Both are whole processes, run alternately round by round (export, nbconvert, then again) so
that a change in the machine's load falls on both alike. Printed: each one's median wall
time, and the ratio as the median and min-max of the per-round ratios with the load average.
Target: median ratio <= 1.0.

    python benchmarks/bench_export.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from _timing import medians_line, rounds, target_line, walls


def generated_notebook(path: Path, cells: int = 1000, marks: bool = True) -> Path:
    """``x_i = x_{i-1} + i`` cells, with a params cell and (``marks``) a step mark every
    100 cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    first = "%%mlops params\nx_0 = 0  # start" if marks else "x_0 = 0"
    nb.cells.append(nbformat.v4.new_code_cell(first))
    for i in range(1, cells):
        mark = f"%%mlops step part_{i // 100}\n" if marks and i % 100 == 1 else ""
        nb.cells.append(nbformat.v4.new_code_cell(f"{mark}x_{i} = x_{i - 1} + {i}"))
    nbformat.write(nb, str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    """Time both sides alternately ``--repeat`` rounds and print the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=rounds, default=3, help="rounds (default 3)")
    repeat = parser.parse_args(argv).repeat
    with tempfile.TemporaryDirectory() as tmp:
        notebook = generated_notebook(Path(tmp) / "big.ipynb")
        times = walls({
            "export": [sys.executable, "-m", "jupyter_mlops.cli", "export", str(notebook),
                       "-o", str(Path(tmp) / "big_pipeline")],
            "nbconvert --to script": [sys.executable, "-m", "jupyter", "nbconvert", "--to",
                                      "script", str(notebook), "--output-dir", tmp],
        }, repeat)
    print(f"export of a 1,000-cell notebook, {medians_line(times)}")
    print("  " + target_line("export / nbconvert --to script", times["export"],
                             times["nbconvert --to script"], 1.0))


if __name__ == "__main__":
    main()
