"""The command-line face: ``jupyter mlops SUBCOMMAND``, thin over the library."""

from .app import console, main

__all__ = ["console", "main"]
