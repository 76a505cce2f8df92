"""Export of a generated 1,000-cell notebook / `jupyter nbconvert --to script` of it.

Both are whole processes, medians of 3 runs. Target: ratio <= 1.0.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import nbformat
from _timing import report, wall


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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        notebook = generated_notebook(Path(tmp) / "big.ipynb")
        ours = wall([sys.executable, "-m", "jupyter_mlops.cli", "export", str(notebook),
                     "-o", str(Path(tmp) / "big_pipeline")])
        theirs = wall([sys.executable, "-m", "jupyter", "nbconvert", "--to", "script",
                       str(notebook), "--output-dir", tmp])
    report("export of a 1,000-cell notebook", ours, theirs, "nbconvert --to script", 1.0)


if __name__ == "__main__":
    main()
