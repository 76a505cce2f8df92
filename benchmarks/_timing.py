"""Timing for the benchmarks, no assertions: whole processes (or functions in this process)
timed alternately round by round (A B A B ...), each comparison reported as the median and
min-max of its per-round ratios with the load average (:func:`paired` also samples each
process's peak memory); and the older medians of repeated runs of one side at a time
(:func:`wall`, :func:`report`)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

_R = TypeVar("_R")

# Processes started by a benchmark write and reuse bytecode as on a user's machine: a shell
# with PYTHONDONTWRITEBYTECODE set would have every run compile jupyter-mlops from source.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# Each timed run is a first run, as papermill's always is: no zygote is kept warm from the
# run before (jupyter_mlops.execution.warm). bench_cache.py times the warm re-run on purpose.
os.environ.setdefault("JUPYTER_MLOPS_KEEP_WARM", "0")


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


def measured(command: Sequence[str], cwd: str | None = None, env: dict | None = None,
             interval: float = 0.05) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes summed over the process and all its descendants,
    sampled every ``interval`` s) of running ``command`` as its own process."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(list(command), cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    peak = 0
    watched = psutil.Process(process.pid)
    while process.poll() is None:
        total = 0
        try:
            family = [watched, *watched.children(recursive=True)]
        except psutil.Error:
            family = []
        for member in family:
            try:
                total += member.memory_info().rss
            except psutil.Error:
                pass
        peak = max(peak, total)
        time.sleep(interval)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds, peak


def paired(sides: dict[str, Sequence[str]], repeat: int, cwd: str | None = None,
           before: dict | None = None) -> dict[str, list[tuple[float, int]]]:
    """Run the sides alternately (A B A B ...), ``repeat`` rounds; each side's (wall, peak
    RSS) per round. ``before``: a callable per side run before each of its runs (untimed)."""
    results: dict[str, list[tuple[float, int]]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, command in sides.items():
            if before and name in before:
                before[name]()
            results[name].append(measured(command, cwd=cwd))
    return results


def ratio_line(label: str, ours: list[float], theirs: list[float]) -> str:
    """``label: median ratio (min-max) over the paired rounds, load average``."""
    import os

    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{label}: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
            f"max {max(ratios):.2f}) over {len(ratios)} paired rounds; load average {load}")


def timed(command: Sequence[str], cwd: str | None = None, env: dict | None = None) -> float:
    """Wall seconds of running ``command`` as its own process, its output captured; it must
    succeed (the end of its stderr is in the error otherwise)."""
    start = time.perf_counter()
    process = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        stderr = process.stderr.decode(errors="replace")
        raise RuntimeError(f"{command[:4]} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds


def alternate(sides: Mapping[str, Callable[[int], _R]], repeat: int,
              before: Mapping[str, Callable[[], object]] | None = None) -> dict[str, list[_R]]:
    """Call the sides alternately (A B A B ...), ``repeat`` rounds, each with the round's
    index (from 0); each side's results, one per round. A side times what it measures itself
    (whole processes with :func:`timed`, or functions in this process), so ``before``'s
    callable for a side (a fresh copy, a cleared cache) runs before each of its calls, untimed."""
    results: dict[str, list[_R]] = {name: [] for name in sides}
    for index in range(repeat):
        for name, side in sides.items():
            if before and name in before:
                before[name]()
            results[name].append(side(index))
    return results


def walls(sides: Mapping[str, Sequence[str]], repeat: int, cwd: str | None = None,
          before: Mapping[str, Callable[[], object]] | None = None) -> dict[str, list[float]]:
    """Each command's wall seconds per round, the commands run alternately (A B A B ...),
    ``repeat`` rounds: :func:`paired` without sampling memory, so that each process's end is
    seen at once rather than at the next 50 ms sample."""
    return alternate({name: partial(_timed_round, command, cwd) for name, command in sides.items()},
                     repeat, before)


def _timed_round(command: Sequence[str], cwd: str | None, _index: int) -> float:
    return timed(command, cwd=cwd)


def target_line(label: str, ours: list[float], theirs: list[float], target: float,
                digits: int = 2) -> str:
    """:func:`ratio_line`'s figures (the median and min-max of the per-round ratios, the load
    average) with ``digits`` decimals, and whether the median ratio meets ``target`` (<=)."""
    import os

    ratios = [a / b for a, b in zip(ours, theirs, strict=True)]
    median = statistics.median(ratios)
    verdict = "meets" if median <= target else "misses"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{label}: median {median:.{digits}f} (min {min(ratios):.{digits}f}, "
            f"max {max(ratios):.{digits}f}) over {len(ratios)} paired rounds, target <= "
            f"{target}: {verdict}; load average {load}")


def medians_line(times: Mapping[str, list[float]]) -> str:
    """``median wall: A 1.23 s, B 4.56 s`` over each side's rounds."""
    return "median wall: " + ", ".join(f"{name} {statistics.median(values):.2f} s"
                                       for name, values in times.items())


def rounds(text: str) -> int:
    """An argparse ``type`` for ``--repeat``: a whole number of rounds, at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rounds (1 or more)")
    return value
