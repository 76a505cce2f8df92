"""The kernel runtime as a wheel of its own: what a step's kernel imports, and nothing else.

A pipeline step's kernel needs a small part of jupyter-mlops: the runtime (artifacts, checks,
profiles, captures), the ``%%mlops`` magic that checks data and metrics cells, the reading
of a cell's names it uses, and the forked-kernel entry point. Installing the whole tool there
would bring pandas>=2, scikit-learn>=1.3 and a Jupyter server into an environment whose
author pinned older versions, and break it. This wheel, ``jupyter-mlops-runtime``, holds
those modules from this installation, byte for byte, asks for the oldest versions they run on
(Python 3.9, pandas 1.3, numpy 1.21), and leaves pyarrow and skops as extras that an
installer adds only when it can without changing a version (:mod:`.kernelenv`).

It is written here, from the installed files, as PEP 427 describes a wheel, so it needs no
build tool, no network and no Node.js: ``jupyter mlops kernel`` installs it into another
environment (an Airflow worker's too), and ``jupyter mlops kfp`` puts it beside its image's
requirements.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

from ..runtime._files import write_with

__all__ = ["DIST", "EXTRAS", "KERNEL_FILES", "REQUIRES", "build_runtime_wheel", "runtime_version",
           "wheel_name"]

#: The distribution's name.
DIST = "jupyter-mlops-runtime"
#: The package's files a step kernel imports, relative to the ``jupyter_mlops`` folder.
KERNEL_FILES = (
    "__init__.py", "_version.py", "errors.py",
    "runtime/__init__.py", "runtime/_files.py", "runtime/_jsonvalues.py",
    "runtime/arrowfile.py", "runtime/arrowrefs.py", "runtime/artifacts.py",
    "runtime/capture.py", "runtime/checks.py", "runtime/distances.py", "runtime/drift.py",
    "runtime/frames.py", "runtime/mixedcolumns.py", "runtime/profile.py", "runtime/remote.py",
    "runtime/trust.py",
    "ipython/__init__.py", "ipython/kernel.py", "ipython/magics.py",
    "notebook/__init__.py", "notebook/captures.py", "notebook/names.py",
    "notebook/params.py", "notebook/reader.py", "notebook/roles.py",
    "execution/__init__.py", "execution/localcheck.py", "execution/zygote_main.py",
)
#: What the runtime needs in every kernel: the oldest versions it runs on.
REQUIRES = ("numpy>=1.21", "pandas>=1.3", "scipy>=1.7", "pyyaml>=5.1", "ipykernel>=5.5")
#: What it uses when present; an installer adds each only where no version would change.
EXTRAS = {"arrow": ("pyarrow>=7",), "models": ("skops>=0.9",), "remote": ("fsspec>=2021.7",)}
_TAG = "py3-none-any"


def _package() -> Path:
    return Path(__file__).resolve().parents[1]


def runtime_version() -> str:
    """The runtime wheel's version: this installation's."""
    from .. import __version__

    return __version__


def wheel_name(version: str | None = None) -> str:
    """The wheel's file name for ``version`` (this installation's by default)."""
    return f"{DIST.replace('-', '_')}-{version or runtime_version()}-{_TAG}.whl"


def _metadata(version: str) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DIST}", f"Version: {version}",
             "Summary: The part of jupyter-mlops a pipeline step's kernel imports",
             "License: BSD-3-Clause", "Requires-Python: >=3.9"]
    lines += [f"Requires-Dist: {r}" for r in REQUIRES]
    for extra, requirements in EXTRAS.items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {r}; extra == "{extra}"' for r in requirements]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def _entries(version: str) -> dict[str, bytes]:
    """The wheel's files by archive name, RECORD last."""
    package = _package()
    entries: dict[str, bytes] = {}
    for relative in KERNEL_FILES:
        source = package / relative
        if relative == "_version.py" and not source.is_file():  # a tree never built
            entries["jupyter_mlops/_version.py"] = f'__version__ = "{version}"\n'.encode()
            continue
        entries[f"jupyter_mlops/{relative}"] = source.read_bytes()
    info = f"{DIST.replace('-', '_')}-{version}.dist-info"
    entries[f"{info}/METADATA"] = _metadata(version).encode()
    entries[f"{info}/WHEEL"] = (f"Wheel-Version: 1.0\nGenerator: jupyter-mlops {version}\n"
                                f"Root-Is-Purelib: true\nTag: {_TAG}\n").encode()
    record = [_record_line(n, d) for n, d in entries.items()] + [f"{info}/RECORD,,"]
    entries[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    return entries


def build_runtime_wheel(folder: str | Path) -> Path:
    """Write the runtime wheel into ``folder``; return its path. The same installation
    always writes the same bytes (fixed timestamps), so a folder's copy can be compared."""
    version = runtime_version()
    if not re.fullmatch(r"[0-9A-Za-z.+!_-]+", version):
        raise ValueError(f"jupyter-mlops version {version!r} cannot name a wheel")
    path = Path(folder) / wheel_name(version)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(handle: object) -> None:
        with zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:  # type: ignore[arg-type]
            for name, data in _entries(version).items():
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, data)

    write_with(path, write)
    return path
