"""The Jupyter kernels installed here: which a pipeline may run in (``--kernel NAME``).

Kernelspecs are read as jupyter_client finds them (``kernels/NAME/kernel.json`` in each of
Jupyter's data paths, the first one found winning, names compared in lower case, and
ipykernel's own ``python3`` when no file names it) but without importing jupyter_client:
that import (zmq, asyncio clients) would cost a fully cached re-run, which starts no kernel,
a tenth of a second. The data paths are given explicitly for the same reason: the default
list also asks IPython for its folder.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import OptionError

__all__ = ["KernelSpec", "installed_kernels", "kernel_abilities", "kernel_folder",
           "kernel_metadata", "kernel_spec", "spec_in"]

#: ipykernel's own kernel, which jupyter_client offers when no kernelspec file names it.
NATIVE = "python3"


@dataclass(frozen=True)
class KernelSpec:
    """What a ``kernel.json`` says (the fields jupyter-mlops reads)."""

    name: str
    argv: list[str]
    display_name: str
    language: str
    metadata: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


def _kernel_dirs() -> list[Path]:
    from jupyter_core.paths import jupyter_path

    return [Path(p) for p in jupyter_path("kernels")]


def _found() -> dict[str, Path]:
    """Each installed kernel's folder by name (lower case), the first path winning."""
    found: dict[str, Path] = {}
    for folder in _kernel_dirs():
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if (entry / "kernel.json").is_file():
                found.setdefault(entry.name.lower(), entry)
    return found


def _native() -> KernelSpec | None:
    if importlib.util.find_spec("ipykernel") is None:
        return None
    return KernelSpec(NATIVE, [sys.executable, "-m", "ipykernel_launcher", "-f",
                               "{connection_file}"], "Python 3 (ipykernel)", "python",
                      {"debugger": True})


def installed_kernels() -> list[str]:
    """The names of the kernelspecs installed here, sorted."""
    names = set(_found())
    if NATIVE not in names and _native() is not None:
        names.add(NATIVE)
    return sorted(names)


def kernel_folder(name: str) -> Path | None:
    """The folder of the kernelspec file called ``name`` (its ``kernel.json``), or None when
    no file names it (ipykernel's own ``python3`` may still be there: :func:`kernel_spec`)."""
    return _found().get(name.lower())


def kernel_spec(name: str) -> KernelSpec | None:
    """The kernelspec called ``name``, or None when no such kernel is installed (or its
    ``kernel.json`` cannot be read)."""
    folder = kernel_folder(name)
    if folder is None:
        return _native() if name.lower() == NATIVE else None
    return spec_in(folder)


def spec_in(folder: Path) -> KernelSpec | None:
    """The kernelspec in ``folder`` (its ``kernel.json``), or None when there is none or it
    cannot be read."""
    try:
        data = json.loads((folder / "kernel.json").read_text(encoding="utf-8"))
        argv = [str(a) for a in data["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    return KernelSpec(folder.name, argv, str(data.get("display_name", folder.name)),
                      str(data.get("language", "")), metadata, env)


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
    (``{"frames": "arrow"|"json-table", "models": "skops"|"pickle"|"none", "why": {...}}``),
    or {} for a kernel it did not register (or none installed)."""
    spec = kernel_spec(name)
    found = spec.metadata.get("jupyter_mlops") if spec is not None else None
    return found if isinstance(found, dict) else {}
