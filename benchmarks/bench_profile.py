"""Profile of an N x 20 mixed-type frame / ``df.describe(include="all")`` of it.

Both run in this process on the same frame, alternately (A B A B ...), 3 rounds by default;
printed per N: the median and min-max of the per-round ratio with the load average, and each
side's median seconds, which show whether the profile grows linearly with the rows. Target
at 1,000,000 rows: ratio <= 1.2.

Usage: python benchmarks/bench_profile.py [N ...] [--repeat R]   (default: 1000000)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
from _timing import alternate, medians_line, rounds, target_line

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


def _timed(work: Callable[[], object]) -> Callable[[int], float]:
    def side(_index: int) -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    return side


def main() -> None:
    """Profile and describe frames of each size, alternately; print the figures."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="*", type=int, default=[ROWS])
    parser.add_argument("--repeat", type=rounds, default=3)
    args = parser.parse_args()
    for rows in args.rows:
        df = mixed_frame(rows)
        profile_data(df.head(1000), "df")  # warm-up: the lazy imports happen here, untimed
        times = alternate({"profile": _timed(partial(profile_data, df, "df")),
                           "describe": _timed(partial(df.describe, include="all"))},
                          args.repeat)
        print(f"{rows:,} x {df.shape[1]}, {medians_line(times)}")
        print("  " + target_line("profile / describe(include='all')", times["profile"],
                                 times["describe"], 1.2))


if __name__ == "__main__":
    main()
