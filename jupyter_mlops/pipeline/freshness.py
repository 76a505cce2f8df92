"""Is a pipeline still its notebook? The rule every face uses before it runs one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .spec import PipelineSpec


def stale_export(spec: PipelineSpec, folder: str | Path) -> str | None:
    """One line when the pipeline in ``folder`` no longer matches the notebook it was
    exported from (the notebook changed, or is not where the export found it); None when it
    matches. A run uses the exported cells either way; this says so instead of guessing."""
    notebook = (Path(folder) / spec.source).resolve()
    try:
        current = hashlib.sha256(notebook.read_bytes()).hexdigest()
    except OSError:
        return (f"the notebook this pipeline was exported from is not at {notebook}; the run "
                "uses the cells of the export")
    if current != spec.source_sha256:
        return (f"{notebook.name} changed since the export; the run uses the exported cells "
                "(export again to run its latest cells)")
    return None
