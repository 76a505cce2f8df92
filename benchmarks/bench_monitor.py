"""How often ``monitor`` is right: false alarms on samples of the training data, detections
of shifts in the features the model leans on, before and after drift weighted by importance.

A wine classifier (scikit-learn's wine data, 178 rows x 13 features, a random forest) is
exported and run once. Then, in this process, ``monitor`` checks:

- 20 random samples of half the training file (no drift: every unhealthy verdict is a false
  alarm), and
- 20 shifts of the model's two most important features by two standard deviations, each on
  a different random half (drift where the model looks: every healthy verdict is a miss).

"Before" is the rule of counting columns alone (``drift_importance`` set to 1.0, so only
the drifted-column share can make a verdict unhealthy); "after" is the default policy
(``drift_share`` 0.5, ``drift_importance`` 0.3). Not a timing: no baseline, no ratio.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd

from jupyter_mlops.serving.monitor import monitor
from jupyter_mlops.serving.retrain import RetrainPolicy

SAMPLES = 20
CELLS = (
    "%load_ext jupyter_mlops",
    "%%mlops setup\nimport pandas as pd\nfrom sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.model_selection import train_test_split",
    "%%mlops params\ndata_path = 'wine.csv'",
    "%%mlops step load\ndf = pd.read_csv(data_path)\nfeatures = [c for c in df.columns "
    "if c != 'target']",
    "%%mlops data X_train X_test y_train y_test\nX_train, X_test, y_train, y_test = "
    "train_test_split(df[features], df['target'], test_size=0.3, random_state=0, "
    "stratify=df['target'])",
    "%%mlops step train\nn_trees = 200",
    "%%mlops model model\nmodel = RandomForestClassifier(n_estimators=n_trees, random_state=0)"
    ".fit(X_train, y_train)",
    "%%mlops step evaluate\npredicted = model.predict(X_test)",
    "%%mlops metrics accuracy\naccuracy = float((predicted == y_test).mean())",
)


def _cli(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "jupyter_mlops.cli", *args], cwd=cwd, check=True,
                   capture_output=True)


def build(root: Path) -> tuple[Path, pd.DataFrame]:
    """The wine notebook run once (capturing), exported and run: its pipeline folder."""
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    frame.to_csv(root / "wine.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    notebook = root / "wine.ipynb"
    nbformat.write(nb, str(notebook))
    env = dict(os.environ, JUPYTER_MLOPS_NOTEBOOK=str(notebook))
    subprocess.run([sys.executable, "-m", "papermill", str(notebook), str(root / "ran.ipynb"),
                    "--cwd", str(root), "--no-progress-bar"], check=True, capture_output=True,
                   env=env)
    _cli("export", str(notebook), cwd=root)
    _cli("run", str(root / "wine_pipeline"), cwd=root)
    return root / "wine_pipeline", frame


def verdicts(pipeline: Path, files: list[Path], policy: RetrainPolicy) -> list[bool]:
    """Whether ``monitor`` calls each file unhealthy under ``policy``."""
    found = []
    for path in files:
        with contextlib.redirect_stdout(io.StringIO()):
            report = monitor(pipeline, path, policy=policy)
        found.append(not report["healthy"])
    return found


def importances(pipeline: Path) -> dict[str, float]:
    """The served model's importance of each input column (shares summing to 1)."""
    from jupyter_mlops.serving.importance import model_importance
    from jupyter_mlops.serving.model import load_run_model, open_store

    store = open_store(pipeline, None)
    try:
        run = store.run(store.served_run())
        found = model_importance(run, load_run_model(store, run.run_id))
    finally:
        store.close()
    return dict(found["columns"])


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pipeline, frame = build(root)
        rng = np.random.default_rng(0)
        quiet, shifted = [], []
        shares = importances(pipeline)
        top = sorted(shares, key=lambda c: -shares[c])[:2]
        for i in range(SAMPLES):
            half = frame.sample(frac=0.5, random_state=int(rng.integers(1 << 30)))
            quiet.append(root / f"quiet_{i}.csv")
            half.drop(columns="target").to_csv(quiet[-1], index=False)
            moved = frame.sample(frac=0.5, random_state=int(rng.integers(1 << 30))).copy()
            for column in top:
                moved[column] = moved[column] + 2 * frame[column].std()
            shifted.append(root / f"shifted_{i}.csv")
            moved.drop(columns="target").to_csv(shifted[-1], index=False)
        policies = {"before (columns only)": RetrainPolicy(drift_importance=1.0),
                    "after (columns or importance)": RetrainPolicy()}
        print(f"wine: {len(frame)} rows, 13 features; the model's top features: "
              + ", ".join(f"{c} {shares[c]:.2f}" for c in top)
              + f"; load average {os.getloadavg()[0]:.2f}")
        for name, policy in policies.items():
            alarms = sum(verdicts(pipeline, quiet, policy))
            caught = sum(verdicts(pipeline, shifted, policy))
            print(f"{name}: false alarms {alarms}/{SAMPLES} ({alarms / SAMPLES:.0%}), "
                  f"detections of a 2-sd shift in {' and '.join(top)} {caught}/{SAMPLES} "
                  f"({caught / SAMPLES:.0%})")


if __name__ == "__main__":
    main()
