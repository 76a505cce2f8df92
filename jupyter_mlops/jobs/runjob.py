"""``python -m jupyter_mlops.jobs.runjob``: one scheduled run, in a process of its own.

The scheduler chooses the run id and claims the slot before it starts this process, so the
slot names its run from the first second; a run that crashes, or a pipeline that no longer
reads, ends this process and never the scheduler. The run records its job and trigger in the
store. SIGTERM cancels it cleanly (its kernels stopped, its record ``cancelled``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import MlopsError
from ..run.startup import skip_slow_optional_imports


def main(argv: list[str] | None = None) -> int:
    """Run one pipeline for a job; exit 0 (succeeded), 1 (failed) or 2 (could not start)."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.jobs.runjob")
    parser.add_argument("pipeline")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--parameters", default="{}", help="typed values, as a JSON object")
    parser.add_argument("--trigger", default="{}", help="why the run starts, as JSON")
    args = parser.parse_args(argv)
    skip_slow_optional_imports()
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    trigger = json.loads(args.trigger)
    try:
        from ..run.runner import run_pipeline, stop_on_sigterm

        with stop_on_sigterm(f"cancelled: the scheduler of job {trigger.get('job')} stopped it"):
            result = run_pipeline(args.pipeline, json.loads(args.parameters),
                                  run_id=args.run_id, store=args.store, trigger=trigger,
                                  started_by=f"schedule:{trigger.get('job')}")
    except MlopsError as err:
        print(f"error: {str(err).splitlines()[0]}", flush=True)
        return err.exit_code
    except KeyboardInterrupt:
        print("cancelled", flush=True)
        return 130
    if result.status != "succeeded":
        print(result.error or "the run did not finish", flush=True)
        return 1
    print(f"run {result.run_id} succeeded", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
