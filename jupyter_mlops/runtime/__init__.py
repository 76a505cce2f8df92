"""What runs inside a step's kernel: artifacts saved and loaded, data and metric checks,
profiles and captures. Imports only the standard library and, lazily, the library of the value
at hand; nothing from the rest of jupyter-mlops but :mod:`jupyter_mlops.errors`.

A pipeline and the runtime in its kernel agree on :data:`PROTOCOL`: the layout of artifacts
and manifests and the calls a step notebook makes. Every step notebook calls
:func:`require_protocol` first, so a kernel whose runtime speaks another protocol fails the
step at once, with the command that fixes it, not midway through saving outputs.
"""

from __future__ import annotations

#: The protocol this runtime speaks; an export writes it into ``pipeline.yaml``.
PROTOCOL = 1
#: The protocols of pipelines this runtime can run.
SUPPORTED = frozenset({1})

__all__ = ["PROTOCOL", "SUPPORTED", "require_protocol"]


def require_protocol(protocol: int) -> None:
    """Refuse, in one line, to run a step exported for a protocol this runtime does not
    speak."""
    if protocol in SUPPORTED:
        return
    import sys
    from importlib import metadata

    from ..errors import MlopsError

    version = "(not installed)"
    # not `from .. import __version__`: the runtime imports nothing of the package; the
    # runtime comes as the whole tool or as its kernel-only wheel
    for dist in ("jupyter-mlops", "jupyter-mlops-runtime"):
        try:
            version = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            continue

    newer = protocol > PROTOCOL
    fix = (f"run `jupyter mlops kernel {sys.executable}` with a newer jupyter-mlops to update "
           "this kernel's runtime" if newer else
           "export the notebook again with this jupyter-mlops")
    raise MlopsError(f"this pipeline was exported for jupyter-mlops runtime protocol "
                     f"{protocol}, but this kernel's jupyter-mlops {version} speaks "
                     f"{PROTOCOL}; {fix}")
