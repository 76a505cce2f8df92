"""The Jupyter kernels installed here: which a pipeline may run in (``--kernel NAME``).

The Jupyter data paths are given explicitly: the default list also asks IPython for its
folder, and importing IPython costs a light command more than the lookup itself.
"""

from __future__ import annotations

from typing import Any

from ..errors import OptionError

__all__ = ["installed_kernels", "kernel_abilities", "kernel_metadata", "kernel_spec"]


def _manager() -> Any:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_core.paths import jupyter_path

    return KernelSpecManager(kernel_dirs=jupyter_path("kernels"))


def installed_kernels() -> list[str]:
    """The names of the kernelspecs installed here, sorted."""
    return sorted(_manager().find_kernel_specs())


def kernel_spec(name: str) -> Any | None:
    """The kernelspec called ``name``, or None when no such kernel is installed."""
    from jupyter_client.kernelspec import NoSuchKernel

    try:
        return _manager().get_kernel_spec(name)
    except NoSuchKernel:
        return None


def kernel_metadata(name: str, option: str = "kernel") -> dict[str, str]:
    """The notebook ``kernelspec`` metadata of installed kernel ``name``; an OptionError
    naming the kernels that are installed when there is none such."""
    spec = kernel_spec(name)
    if spec is None:
        raise OptionError(f"no kernel `{name}` is installed here; the kernels are: "
                          f"{', '.join(installed_kernels()) or 'none'} (`jupyter kernelspec "
                          "list` shows where)", option=option)
    return {"name": name, "display_name": spec.display_name, "language": spec.language}


def kernel_abilities(name: str) -> dict[str, object]:
    """What ``jupyter mlops kernel`` found kernel ``name`` can pass between steps
    (``{"frames": "parquet"|"json-table", "models": "skops"|"pickle"|"none", "why": {...}}``),
    or {} for a kernel it did not register (or none installed)."""
    spec = kernel_spec(name)
    found = (spec.metadata or {}).get("jupyter_mlops") if spec is not None else None
    return found if isinstance(found, dict) else {}
