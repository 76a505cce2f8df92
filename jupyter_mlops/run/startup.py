"""What the command-line processes of jupyter-mlops leave out at startup."""

from __future__ import annotations

import sys

from ..execution.imports import papermill_without_hdfs

#: jsonschema's optional checkers of string formats that take long to import.
_FORMAT_CHECKERS = ("rfc3987_syntax", "rfc3986_validator", "isoduration")


def skip_slow_optional_imports() -> None:
    """Keep jsonschema from importing its optional ``rfc3987_syntax`` (and two other checkers
    of string formats), and papermill its HDFS handler, in this process only.

    nbformat imports jsonschema to validate notebooks, and jsonschema imports
    ``rfc3987_syntax`` when it is installed (JupyterLab's dependencies install it), which
    compiles 38 grammars as it is imported: 2.6 s of CPU on a 2-core machine, more than the
    rest of ``jupyter mlops run`` before its first step. It only adds a checker of the
    ``iri`` string format, which nothing these processes validate uses (notebooks are
    validated without format checks); ``rfc3986_validator`` (``uri``) and ``isoduration``
    (``duration``, with the ``arrow`` dates library) took 14 ms more. Papermill: see
    :func:`.papermill_without_hdfs`. Not done when jupyter-mlops is imported as a library
    or a server extension: other code in that process may check that format.
    """
    if "jsonschema" not in sys.modules:
        for name in _FORMAT_CHECKERS:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]
    papermill_without_hdfs()
