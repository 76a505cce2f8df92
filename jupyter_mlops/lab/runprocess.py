"""``python -m jupyter_mlops.lab.runprocess``: the child process of a run started from JupyterLab.

The server extension (:mod:`jupyter_mlops.lab.launches`) chooses the run id, so it can show the
run's progress from its first second; this entry point only calls :func:`run_pipeline` with
it. Its output goes to a log the server reads for the one-line error of a failed run. A cancel
from the sidebar is a SIGTERM, which the run turns into a record that says
``cancelled from JupyterLab`` (in the store and ``run.json``) before this process exits, so
the record is final even if the server is gone by then.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import MlopsError
from ..run.startup import skip_slow_optional_imports


def main(argv: list[str] | None = None) -> int:
    """Run one pipeline with a given run id and JSON parameters; exit as ``jupyter mlops run``."""
    parser = argparse.ArgumentParser(prog="python -m jupyter_mlops.lab.runprocess")
    parser.add_argument("pipeline")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--parameters", default="{}", help="typed values, as a JSON object")
    parser.add_argument("--kernel", help="the kernel the steps run in (default: the pipeline's)")
    args = parser.parse_args(argv)
    skip_slow_optional_imports()
    logging.getLogger("papermill").setLevel(logging.CRITICAL)
    try:
        from ..run.runner import run_pipeline, stop_on_sigterm

        with stop_on_sigterm("cancelled from JupyterLab"):
            result = run_pipeline(args.pipeline, json.loads(args.parameters),
                                  run_id=args.run_id, started_by="jupyterlab",
                                  kernel=args.kernel)
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
