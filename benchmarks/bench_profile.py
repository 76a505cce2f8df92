"""Profile of a 1,000,000 x 20 mixed-type frame / ``df.describe(include="all")`` of it.

Both run in this process on the same frame, medians of 3 runs. Target: ratio <= 1.5.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from _timing import report

from jupyter_mlops.runtime.profile import profile_data

ROWS = 1_000_000


def mixed_frame(rows: int = ROWS, seed: int = 0) -> pd.DataFrame:
    """20 columns: 9 floats (every other one 5% NaN), 4 ints, 5 strings of 50 levels (uniform
    and Zipf-skewed), a boolean and a datetime."""
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {}
    for i in range(9):
        values = rng.normal(i, 1 + i, rows)
        if i % 2 == 0:
            values[rng.random(rows) < 0.05] = np.nan
        columns[f"float_{i}"] = values
    for i in range(4):
        columns[f"int_{i}"] = rng.integers(0, 10 ** (i + 2), rows)
    levels = np.array([f"level_{k:02d}" for k in range(50)], dtype=object)
    for i in range(5):
        codes = rng.zipf(1.5, rows) % 50 if i % 2 else rng.integers(0, 50, rows)
        columns[f"category_{i}"] = levels[codes]
    columns["flag"] = rng.random(rows) < 0.3
    seconds = rng.integers(0, 365 * 86_400, rows)
    columns["when"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(seconds, unit="s")
    return pd.DataFrame(columns)


def median_time(work: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``repeat`` calls of ``work``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    df = mixed_frame()
    profile_data(df.head(1000), "df")  # warm-up: the lazy imports happen here, untimed
    ours = median_time(lambda: profile_data(df, "df"))
    theirs = median_time(lambda: df.describe(include="all"))
    report(f"profile of {len(df):,} x {df.shape[1]}", ours, theirs, "describe(include='all')",
           1.5)


if __name__ == "__main__":
    main()
