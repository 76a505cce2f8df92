"""What the command-line processes of jupyter-mlops leave out at startup."""

from __future__ import annotations

import sys


def skip_slow_optional_imports() -> None:
    """Keep jsonschema from importing its optional ``rfc3987_syntax``, in this process only.

    nbformat imports jsonschema to validate notebooks, and jsonschema imports
    ``rfc3987_syntax`` when it is installed (JupyterLab's dependencies install it), which
    compiles 38 grammars as it is imported: 2.6 s of CPU on a 2-core machine, more than the
    rest of ``jupyter mlops run`` before its first step. It only adds a checker of the
    ``iri`` string format, which nothing these processes validate uses (notebooks are
    validated without format checks). Not done when jupyter-mlops is imported as a library
    or a server extension: other code in that process may check that format.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
