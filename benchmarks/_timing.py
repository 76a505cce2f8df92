"""Timing whole processes for the benchmarks: medians of repeated runs, no assertions."""

from __future__ import annotations

import statistics
import subprocess
import time
from collections.abc import Sequence


def wall(command: Sequence[str], repeat: int = 3, cwd: str | None = None) -> float:
    """Median wall time of running ``command`` as its own process ``repeat`` times."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(list(command), check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(name: str, ours: float, baseline: float, baseline_name: str, target: float) -> None:
    """Print one benchmark's figures and its ratio against the target."""
    ratio = ours / baseline
    verdict = "meets" if ratio <= target else "misses"
    print(f"{name}: ours {ours:.2f} s, {baseline_name} {baseline:.2f} s, "
          f"ratio {ratio:.2f} ({verdict} target <= {target})")
