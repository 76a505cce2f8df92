"""The command-line face: ``jupyter mlops SUBCOMMAND``, thin over the library."""

from .app import main

__all__ = ["main"]
