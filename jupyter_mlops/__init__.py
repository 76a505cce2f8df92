"""jupyter-mlops: turn a marked Jupyter notebook into a tested, tracked papermill pipeline."""

from __future__ import annotations

from typing import Any

try:
    from ._version import __version__
except ImportError:  # a source tree never built: the build writes _version.py
    __version__ = "0.0.0+unbuilt"

__all__ = ["__version__", "load_ipython_extension", "unload_ipython_extension"]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt sidebar (installed by the wheel as well)."""
    return [{"src": "labextension", "dest": "jupyter-mlops"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The server extension behind the sidebar: ``jupyter_mlops`` itself."""
    return [{"module": "jupyter_mlops"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add the ``/mlops/`` endpoints to a starting jupyter_server."""
    from .lab.extension import load

    load(server_app)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext jupyter_mlops``: register the ``%%mlops`` cell magic."""
    from .ipython.magics import register

    register(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext jupyter_mlops``: nothing to undo beyond IPython's own bookkeeping."""
