"""What every subcommand of the CLI shares: its name, its parser class, how it speaks."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

PROG = "jupyter mlops"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def say(message: str) -> None:
    """One line on stderr, after the program's name."""
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
