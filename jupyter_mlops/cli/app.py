"""``jupyter mlops SUBCOMMAND``: a thin face over the library.

Each subcommand lives with its neighbours (:mod:`.pipelines`, :mod:`.runs`, :mod:`.deploy`,
:mod:`.serving`), which import heavy libraries only inside the command, so ``--help``
answers at once. Every error a user can cause ends as one line on stderr and exit 2; a failed
step exits 1. The library speaks of settings by their names; this face alone knows the flags.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import sys

from .. import __version__
from ..errors import MlopsError, OptionError
from ..run.startup import skip_slow_optional_imports
from . import deploy, jobs, pipelines, runs, serving
from .common import PROG, Parser, say

#: The flag that sets each option the library may refuse (an ``OptionError``'s ``option``).
FLAGS = {
    "jobs": "-j", "cell_timeout": "--cell-timeout", "only": "--only/--from", "start": "--from",
    "parameters": "-p", "executor": "--executor", "scheduler": "--scheduler",
    "mirrors": "--mlflow", "output": "-o", "resume": "--resume", "trust": "--trust",
    "runs_dir": "--runs-dir", "kernel": "--kernel", "name": "--name",
}


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="Turn a marked Jupyter notebook into a tested, "
                    "tracked papermill pipeline, and run it.")
    parser.add_argument("--version", action="version", version=f"jupyter-mlops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for group in (pipelines, runs, jobs, deploy, serving):
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
    _text_never_fails(sys.stdout)
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.handler(args)
        sys.stdout.flush()  # here, so that a closed pipe is met inside the `try`
        return code
    except BrokenPipeError:
        return _reader_went_away()
    except MlopsError as err:
        for line in describe_error(err):
            say(line)
        return err.exit_code
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    except OSError as err:  # the system refused a file: a path, a permission, a full disk
        say(f"error: {describe_os_error(err)}")
        return 2
    except Exception as err:  # a bug of ours: say so in one line, traceback on request
        if os.environ.get("MLOPS_DEBUG"):
            raise
        say(f"internal error: {type(err).__name__}: {err} (please report it; set "
            "MLOPS_DEBUG=1 to see the traceback)")
        return 1


def console() -> None:
    """The ``jupyter-mlops`` command: :func:`main`, then exit with its code."""
    code = main()
    # At exit Python collects every object in reference cycles, generation by generation:
    # 0.07 s after a run (68,000 objects), half of a re-run that found nothing to do. The
    # command's work is done and its files are closed, so the system may reclaim the rest;
    # objects are still freed as their last reference goes.
    gc.freeze()
    sys.exit(code)


def describe_os_error(err: OSError) -> str:
    """One line for a file the system refused, naming it and what to check."""
    where = f"{err.filename}: " if err.filename is not None else ""
    reason = err.strerror or str(err) or type(err).__name__
    hint = {errno.ENOSPC: "free some disk space and try again",
            errno.EDQUOT: "free some of your disk quota and try again",
            errno.EROFS: "choose a folder on a writable disk"}.get(
                err.errno or 0, "check the path and its permissions, or choose another")
    return f"{where}{reason}; {hint}"


def _reader_went_away() -> int:
    """The reader of our output closed it (``| head``): stop quietly, as Unix tools do.

    Python would otherwise complain once more when it flushes stdout at exit; pointing
    stdout at devnull stops that (the recipe of Python's documentation, "Note on SIGPIPE").
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (embedded, captured)
        pass
    return 128 + 13  # what a shell reports for a tool that SIGPIPE ended


def _text_never_fails(stream: object) -> None:
    """Write characters the terminal cannot encode as escapes instead of failing on them:
    a stored value (a parameter, a path) is never worth a crash of `runs` or `show`."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


if __name__ == "__main__":
    sys.exit(main())
