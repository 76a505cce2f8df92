"""``jupyter mlops SUBCOMMAND``: a thin face over the library.

Each subcommand lives with its neighbours (:mod:`.pipelines`, :mod:`.runs`, :mod:`.deploy`,
:mod:`.serving`), which import heavy libraries only inside the command, so ``--help``
answers at once. Every error a user can cause ends as one line on stderr and exit 2; a failed
step exits 1. The library speaks of settings by their names; this face alone knows the flags.
"""

from __future__ import annotations

import argparse
import os
import sys

from .. import __version__
from ..errors import MlopsError, OptionError
from ..run.startup import skip_slow_optional_imports
from . import deploy, pipelines, runs, serving
from .common import PROG, Parser, say

#: The flag that sets each option the library may refuse (an ``OptionError``'s ``option``).
FLAGS = {
    "jobs": "-j", "cell_timeout": "--cell-timeout", "only": "--only/--from", "start": "--from",
    "parameters": "-p", "executor": "--executor", "scheduler": "--scheduler",
    "mirrors": "--mlflow", "output": "-o", "resume": "--resume", "trust": "--trust",
}


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Turn a marked Jupyter notebook into a tested, "
                    "tracked papermill pipeline, and run it.")
    parser.add_argument("--version", action="version", version=f"jupyter-mlops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in (pipelines, runs, deploy, serving):
        group.add_commands(sub)
    return parser


def describe_error(err: MlopsError) -> list[str]:
    """The lines the CLI prints for ``err``: a refused option is named by its flag."""
    lines = str(err).splitlines() or [type(err).__name__]
    if isinstance(err, OptionError):
        lines[0] = f"{FLAGS.get(err.option, err.option)}: {lines[0]}"
    return [f"error: {line}" for line in lines]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jupyter-mlops`` (and so of ``jupyter mlops``)."""
    skip_slow_optional_imports()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        return code
    except MlopsError as err:
        for line in describe_error(err):
            say(line)
        return err.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except Exception as err:  # a bug of ours: say so in one line, traceback on request
        if os.environ.get("MLOPS_DEBUG"):
            raise
        say(f"internal error: {type(err).__name__}: {err} (please report it; set "
            "MLOPS_DEBUG=1 to see the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
