"""Batch scoring of a big raw file: ``jupyter mlops predict`` (chunked, the prepare cells
replayed on each chunk) against a plain script doing the same work by hand.

A raw churn file of ``--rows`` records is made by resampling the rows of the example's
``churn.csv`` (without ``churned``, with new customer ids), as CSV or Parquet. Side A runs
``python -m jupyter_mlops.cli predict P --data FILE -o OUT``; side B, the baseline, runs the
simplest script a user would write: pandas reads the whole file, the notebook's two prepare
cells written out, the run's model loaded with ``jupyter_mlops.runtime.artifacts.load``,
``predict`` and ``predict_proba``, one CSV written. Each side is its own process, timed wall
to wall (interpreter start and imports included) with its peak RSS from ``os.wait4``; the
sides alternate round by round (A B A B). Prints figures and whether both outputs hold the
same predictions, asserts nothing.

    python benchmarks/bench_predict.py [--rows 1000000] [--rounds 3] [--format csv|parquet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _serving import CLI, EXAMPLES, churn_pipeline

#: Side B: the notebook's cells 13 and 14 written out, as tests/test_serve_raw.py::by_hand.
BY_HAND = textwrap.dedent('''\
    import sys
    from pathlib import Path

    import pandas as pd

    from jupyter_mlops.runtime.artifacts import load

    data, folder, output = sys.argv[1:4]
    raw = pd.read_parquet(data) if data.endswith(".parquet") else pd.read_csv(data)
    df = raw.fillna({"payment_method": "Unknown"})
    kept = df["total_charges"].notna()
    df = df[kept].drop(columns=["customer_id"])
    df["avg_monthly_spend"] = df["total_charges"] / df["tenure_months"]
    df["calls_per_year"] = df["support_calls"] / df["tenure_months"] * 12
    model = load("clf", Path(folder))
    X = df[list(model.feature_names_in_)]
    out = pd.DataFrame({"record": range(len(raw))})
    out.loc[kept.to_numpy(), "prediction"] = model.predict(X)
    proba = model.predict_proba(X)
    for index, label in enumerate(model.classes_):
        out.loc[kept.to_numpy(), f"proba_{label}"] = proba[:, index]
    out.to_csv(output, index=False)
''')


def _raw_file(root: Path, rows: int, kind: str) -> Path:
    """``rows`` raw records resampled from churn.csv, new customer ids, no ``churned``."""
    import numpy as np
    import pandas as pd

    raw = pd.read_csv(EXAMPLES / "churn" / "data" / "churn.csv").drop(columns=["churned"])
    picked = np.random.default_rng(0).integers(0, len(raw), rows)
    big = raw.iloc[picked].reset_index(drop=True)
    big["customer_id"] = "N" + pd.Series(np.arange(rows)).astype(str).str.zfill(7)
    path = root / f"raw.{kind}"
    if kind == "parquet":
        big.to_parquet(path, index=False, row_group_size=100_000)
    else:
        big.to_csv(path, index=False)
    return path


def _measured(command: list[str], log: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes) of ``command`` as its own process, from wait4."""
    start = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}): {tail}")
    return seconds, usage.ru_maxrss * 1024  # KiB on Linux


def _compare(ours: Path, theirs: Path) -> str:
    """Whether both outputs hold the same predictions (and how close the probabilities)."""
    import numpy as np
    import pandas as pd

    a, b = pd.read_csv(ours), pd.read_csv(theirs)
    if len(a) != len(b):
        return f"outputs differ in length: predict {len(a)} rows, by hand {len(b)}"
    pa, pb = a["prediction"].to_numpy(float), b["prediction"].to_numpy(float)
    same = (pa == pb) | (np.isnan(pa) & np.isnan(pb))
    mismatches = int((~same).sum())
    columns = [c for c in a.columns if c.startswith("proba_") and c in b.columns]
    gap = max((float(np.nanmax(np.abs(a[c].to_numpy(float) - b[c].to_numpy(float))))
               for c in columns), default=float("nan"))
    verdict = "match" if mismatches == 0 else "DO NOT match"
    return (f"predictions {verdict}: {mismatches} mismatches of {len(a):,} records "
            f"({int(np.isnan(pa).sum()):,} dropped by predict, {int(np.isnan(pb).sum()):,} "
            f"by hand); largest probability difference {gap:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["JUPYTER_MLOPS_SCHEDULER"] = "off"
        pipeline, run = churn_pipeline(root)
        folder = Path(run.folder) / "artifacts" / "train_tuned"
        data = _raw_file(root, args.rows, args.format)
        (root / "by_hand.py").write_text(BY_HAND, encoding="utf-8")
        print(f"{args.rows:,} raw records, {args.format}, {data.stat().st_size / 2**20:.0f} MiB")
        sides = {"predict": [*CLI, "predict", str(pipeline), "--data", str(data), "-o",
                             str(root / "a.csv")],
                 "by hand": [sys.executable, str(root / "by_hand.py"), str(data), str(folder),
                             str(root / "b.csv")]}
        found: dict[str, list[tuple[float, int]]] = {name: [] for name in sides}
        for _ in range(args.rounds):
            for name, command in sides.items():
                found[name].append(_measured(command, root / "log.txt"))
        for name, results in found.items():
            walls = [w for w, _ in results]
            wall = statistics.median(walls)
            print(f"{name}: median {wall:.2f} s (min {min(walls):.2f}, max {max(walls):.2f}), "
                  f"{args.rows / wall:,.0f} rows/s, peak RSS median "
                  f"{statistics.median(r for _, r in results) / 2**20:.0f} MiB (max "
                  f"{max(r for _, r in results) / 2**20:.0f})")
        ratios = [a / b for (a, _), (b, _) in zip(found["predict"], found["by hand"],
                                                  strict=True)]
        rss = [a / b for (_, a), (_, b) in zip(found["predict"], found["by hand"], strict=True)]
        print(f"wall predict / by hand: median {statistics.median(ratios):.2f} (min "
              f"{min(ratios):.2f}, max {max(ratios):.2f}) over {len(ratios)} paired rounds")
        print(f"peak RSS predict / by hand: median {statistics.median(rss):.2f} (min "
              f"{min(rss):.2f}, max {max(rss):.2f})")
        print(_compare(root / "a.csv", root / "b.csv"))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
