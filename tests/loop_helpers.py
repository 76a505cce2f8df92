"""A small real pipeline for the serve, monitor and retrain tests: a notebook run once with
papermill (capturing its contract), exported, and run; plus data that drifts on request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import run_cli, write_notebook

CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport pandas as pd\nfrom sklearn.compose import ColumnTransformer\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "from sklearn.model_selection import train_test_split\n"
    "from sklearn.pipeline import make_pipeline\n"
    "from sklearn.preprocessing import OneHotEncoder, StandardScaler",
    "%%mlops params\ndata_path = 'data.csv'  # the table to learn from\nC = 1.0  # regularisation",
    "%%mlops step prepare\ndf = pd.read_csv(data_path)\nfeatures = ['a', 'b', 'c']",
    "%%mlops data X_train X_test y_train y_test\nX_train, X_test, y_train, y_test = "
    "train_test_split(df[features], df['label'], test_size=0.3, random_state=0)",
    "%%mlops step train\nprep = ColumnTransformer([('num', StandardScaler(), ['a', 'b']), "
    "('cat', OneHotEncoder(handle_unknown='ignore'), ['c'])])",
    "%%mlops model model\nmodel = make_pipeline(prep, LogisticRegression(C=C)).fit(X_train, "
    "y_train)",
    "%%mlops step evaluate\npredicted = model.predict(X_test)",
    "%%mlops metrics accuracy\naccuracy = float((predicted == y_test).mean())",
)
FEATURES = ("a", "b", "c")


def make_data(path: Path, rows: int = 600, *, shift: float = 0.0, noise: float = 0.5,
              random_labels: bool = False, seed: int = 0) -> Path:
    """Rows of a (numeric, drifts by ``shift``), b (numeric), c (category) and a 0/1 label
    that follows them up to ``noise`` (or is a coin toss)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(shift, 1, rows)
    b = rng.normal(0, 1, rows)
    c = rng.choice(["x", "y", "z"], rows)
    score = (a - shift) + 0.5 * b + np.where(c == "x", 0.8, 0.0) + rng.normal(0, noise, rows)
    label = rng.integers(0, 2, rows) if random_labels else (score > 0.3).astype(int)
    pd.DataFrame({"a": a, "b": b, "c": c, "label": label}).to_csv(path, index=False)
    return path


def build_pipeline(root: Path) -> Path:
    """The notebook run once (its contract captured), exported, and run once."""
    make_data(root / "data.csv")
    notebook = write_notebook(root / "loop.ipynb", *CELLS)
    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook))
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(root / "ran.ipynb"),
                    "--cwd", str(root), "--no-progress-bar"], check=True, capture_output=True,
                   env=env)
    done = run_cli("export", str(notebook))
    assert done.returncode == 0, done.stderr
    pipeline = root / "loop_pipeline"
    run_pipeline_cli(pipeline)
    return pipeline


def run_pipeline_cli(pipeline: Path, *args: str) -> str:
    """`jupyter mlops run` as a user runs it; the new run's id."""
    done = run_cli("run", str(pipeline), "-j", "1", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    match = re.search(r"^Run (\S+) succeeded", done.stdout, re.M)
    assert match, done.stdout
    return match.group(1)


def one_line_error(done: object) -> str:
    """The single stderr line of a CLI user error (exit 2), checked to be one line."""
    assert done.returncode == 2, (done.stdout, done.stderr)  # type: ignore[attr-defined]
    lines = done.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr  # type: ignore
    return lines[0]
