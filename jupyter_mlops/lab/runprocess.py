"""``python -m jupyter_mlops.lab.runprocess``: the child process of a run started from JupyterLab.

The server extension (:mod:`jupyter_mlops.lab.launches`) chooses the run id, so it can show the
run's progress from its first second; this entry point only calls :func:`run_pipeline` with
it. Its output goes to a log the server reads for the one-line error of a failed run. A cancel
from the sidebar is a SIGTERM, which the run turns into a record that says
``cancelled from JupyterLab`` (in the store and ``run.json``) before this process exits, so
the record is final even if the server is gone by then. The SIGTERM is taken from this
process's first lines on, before anything slow is imported: one that comes while the run is
still being planned waits for the run's record, which then says cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial

from ..run.stop import stop_on_sigterm

#: What the record of a run cancelled from the sidebar says.
CANCEL_REASON = "cancelled from JupyterLab"


def main(argv: list[str] | None = None) -> int:
    """Run one pipeline with a given run id and JSON parameters; exit as ``jupyter mlops run``."""
    with stop_on_sigterm(CANCEL_REASON):
        from ..run.child import run_in_child
        from ..run.options import RunOptions
        from ..serving.skewahead import ahead_of

        parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.lab.runprocess")
        parser.add_argument("pipeline")
        parser.add_argument("--run-id", required=True)
        parser.add_argument("--parameters", default="{}", help="typed values, as a JSON object")
        parser.add_argument("--kernel",
                            help="the kernel the steps run in (default: the pipeline's)")
        args = parser.parse_args(argv)
        options = RunOptions(run_id=args.run_id, started_by="jupyterlab", kernel=args.kernel)
        # the training/serving skew check of a run that succeeds, its imports begun now
        ahead = ahead_of(args.pipeline)
        try:
            return run_in_child(args.pipeline, json.loads(args.parameters), options,
                                CANCEL_REASON, after=None if ahead is None
                                else partial(ahead.check, args.pipeline))
        finally:
            if ahead is not None:
                ahead.close()


if __name__ == "__main__":
    sys.exit(main())
