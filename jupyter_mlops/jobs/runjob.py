"""``python -m jupyter_mlops.jobs.runjob``: one scheduled run, in a process of its own.

The scheduler chooses the run id and claims the slot before it starts this process, so the
slot names its run from the first second; a run that crashes, or a pipeline that no longer
reads, ends this process and never the scheduler. The run records its job and trigger in the
store. SIGTERM cancels it cleanly (its kernels stopped, its record ``cancelled``).
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from ..run.child import run_in_child
from ..run.options import RunOptions
from ..serving.skewahead import ahead_of


def main(argv: list[str] | None = None) -> int:
    """Run one pipeline for a job; exit 0 (succeeded), 1 (failed) or 2 (could not start)."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.jobs.runjob")
    parser.add_argument("pipeline")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--parameters", default="{}", help="typed values, as a JSON object")
    parser.add_argument("--trigger", default="{}", help="why the run starts, as JSON")
    args = parser.parse_args(argv)
    trigger = json.loads(args.trigger)
    options = RunOptions(run_id=args.run_id, store=args.store, trigger=trigger,
                         started_by=f"schedule:{trigger.get('job')}")
    # the training/serving skew check of a run that succeeds, its imports begun now
    ahead = ahead_of(args.pipeline)
    try:
        return run_in_child(args.pipeline, json.loads(args.parameters), options,
                            f"cancelled: the scheduler of job {trigger.get('job')} stopped it",
                            after=None if ahead is None
                            else partial(ahead.check, args.pipeline, store=args.store))
    finally:
        if ahead is not None:
            ahead.close()


if __name__ == "__main__":
    sys.exit(main())
