"""``jupyter nbconvert --to mlops NOTEBOOK``: the export as an nbconvert Exporter.

nbconvert writes one main file and the ``outputs`` of its resources; the pipeline folder's
files are handed over that way, so ``--output-dir`` and the other writer options apply.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nbconvert.exporters import Exporter

from ..errors import AnalysisError, MlopsError


def _running_in_nbconvert_cli() -> bool:
    try:
        from nbconvert.nbconvertapp import NbConvertApp
    except ImportError:  # pragma: no cover - nbconvert is a dependency
        return False
    return NbConvertApp.initialized()


class MlopsExporter(Exporter):
    """Exports a marked notebook to a jupyter-mlops pipeline folder, ``<stem>_pipeline/``."""

    export_from_notebook = "jupyter-mlops pipeline"
    output_mimetype = "text/yaml"

    def _file_extension_default(self) -> str:
        return ".yaml"

    def from_notebook_node(self, nb: Any, resources: dict[str, Any] | None = None,
                           **kw: Any) -> tuple[str, dict[str, Any]]:
        """Analyse ``nb`` and return pipeline.yaml; the other files go in ``outputs``."""
        nb_copy, resources = super().from_notebook_node(nb, resources, **kw)
        try:
            return self._export(nb_copy, resources)
        except MlopsError as err:
            if not _running_in_nbconvert_cli():
                raise
            for line in str(err).splitlines():
                print(f"jupyter nbconvert --to mlops: error: {line}", file=sys.stderr)
            sys.exit(2)

    def _export(self, nb: Any, resources: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        from ..notebook.analysis import analyze
        from ..notebook.reader import from_dict
        from ..pipeline.build import build_spec
        from ..pipeline.contract import build_contract
        from ..pipeline.export import render

        metadata = resources.get("metadata", {})
        name = metadata.get("name") or "notebook"
        source_dir = Path(metadata.get("path") or ".")
        notebook_path = source_dir / f"{name}.ipynb"
        sha256 = ""
        if notebook_path.is_file():
            from ..runtime._files import sha256_file

            sha256 = sha256_file(notebook_path)
        analysis = analyze(from_dict(dict(nb), notebook_path, sha256))
        if analysis.errors:
            raise AnalysisError(analysis.errors)
        build = self.config.get("FilesWriter", {}).get("build_directory") or str(source_dir)
        folder_name = f"{name}_pipeline"
        spec = build_spec(analysis, Path(build) / folder_name)
        spec.checks = build_contract(analysis)[0]
        files = render(analysis, spec)
        output = files.pop("pipeline.yaml").decode("utf-8")
        resources["outputs"] = {f"{folder_name}/{path}": data for path, data in files.items()}
        resources["output_extension"] = f"_pipeline/{'pipeline.yaml'}"
        return output, resources
