"""The threads a step's kernel gives its numerical libraries when steps run side by side.

numpy's BLAS, scikit-learn's OpenMP loops and numexpr start a thread per core in every
kernel: two steps at once on 2 cores ran 4 busy threads, and a cross-validation of a
logistic regression took 6.8-16 s in a step where it took 1.75 s alone (threads that wait
by spinning keep the cores from the work). As joblib does for its workers, each kernel of
a run whose steps may run side by side gets the cores divided among them, through the
variables those libraries read when they load, in the kernels' environment only; a
variable the user set is left as it is, and a chain of steps, which never runs two at
once, keeps every core."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from ..execution.stepexec import KERNEL_THREADS
from ..pipeline.spec import PipelineSpec

__all__ = ["THREAD_VARIABLES", "kernel_threads", "side_by_side"]

#: What OpenMP, OpenBLAS, MKL, Accelerate and numexpr read for their number of threads.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def side_by_side(spec: PipelineSpec) -> int:
    """How many of the pipeline's steps may run at once: the most steps at one depth of
    its graph (a step's depth is the longest way to it from a step that waits for none)."""
    after = {step.name: step.after for step in spec.steps}
    depth: dict[str, int] = {}
    for _ in after:  # a step is listed after those it waits for, unless `--after` says a later one
        for name, waits in after.items():
            depth[name] = 1 + max((depth.get(a, 0) for a in waits), default=0)
    counts: dict[int, int] = {}
    for level in depth.values():
        counts[level] = counts.get(level, 0) + 1
    return max(counts.values(), default=1)


@contextlib.contextmanager
def kernel_threads(spec: PipelineSpec, jobs: int, cores: int | None = None,
                   running: set[str] | None = None) -> Iterator[dict[str, Any] | None]:
    """While the run's kernels start: each kernel's threads set to the cores divided among
    the steps that may run at once (``jobs`` at most; of the steps ``running``, by default
    all), where more than one may; yields the figures it chose by, for the run's record
    (None where it set nothing). The kernels get them in their environment
    (:data:`~jupyter_mlops.execution.stepexec.KERNEL_THREADS`): this process's own is left
    alone, as a user's kernel running a pipeline from its panel needs."""
    cores = cores or os.cpu_count() or 1
    if running is not None:
        spec = replace(spec, steps=[s for s in spec.steps if s.name in running])
    at_once = min(jobs, side_by_side(spec)) if spec.steps else 1
    if at_once <= 1 or any(name in os.environ for name in THREAD_VARIABLES):
        yield None
        return
    threads = max(1, cores // at_once)
    before = dict(KERNEL_THREADS)
    KERNEL_THREADS.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield {"per_kernel": threads, "steps_at_once": at_once, "cores": cores,
               "variables": list(THREAD_VARIABLES)}
    finally:
        KERNEL_THREADS.clear()
        KERNEL_THREADS.update(before)
