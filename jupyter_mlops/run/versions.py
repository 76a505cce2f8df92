"""The installed version of the distribution behind each module a step imports: part of the
step's cache key, and the pins of a Kubeflow image.

Looking them up reads each distribution's metadata (about 20 ms for the diabetes example,
most of what a re-run with nothing changed costs beyond starting Python). They are kept in
the user's cache folder under a key of this interpreter, its ``sys.path`` and the names of
the distributions' metadata folders in each folder on it: installing, upgrading or removing a
package adds or removes a ``NAME-VERSION.dist-info`` folder there, so a kept version is never
one that changed since. (Not the folders' modification times: the notebook's folder is on
``sys.path``, and each file saved there changed the key, so the versions were looked up again
and one more cache file written.) A cache that cannot be read or written is looked past.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["module_versions", "package_versions"]

#: Modules whose distribution has another name, found without scanning every installed one.
_DISTRIBUTION_OF = {"sklearn": "scikit-learn", "yaml": "PyYAML", "PIL": "Pillow",
                    "cv2": "opencv-python", "bs4": "beautifulsoup4", "skimage": "scikit-image",
                    "dateutil": "python-dateutil", "attr": "attrs", "google": "protobuf"}


#: What names a distribution's metadata: installing, upgrading or removing one changes them.
_METADATA = (".dist-info", ".egg-info", ".egg-link", ".pth")


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def package_versions(modules: list[str]) -> dict[str, str]:
    """Installed version of the distribution behind each module (standard library: none)."""
    found: dict[str, str] = {}
    for versions in module_versions(modules).values():
        found.update(versions)
    return dict(sorted(found.items()))


def module_versions(modules: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{module: {distribution: version}}`` for each module not of the standard library."""
    wanted = [m for m in dict.fromkeys(modules) if m not in sys.stdlib_module_names]
    path = _cache_file()
    kept = _read(path) if path is not None else {}
    missing = [m for m in wanted if m not in kept]
    if missing:
        kept.update(_looked_up(missing))
        if path is not None:
            _write(path, kept)
    return {m: dict(kept[m]) for m in wanted}


def _looked_up(modules: list[str]) -> dict[str, dict[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, dict[str, str]] = {}
    for module in modules:
        guess = _DISTRIBUTION_OF.get(module, module)
        mine = found[module] = {}
        try:  # the quick way: the distribution is named like the module
            mine[guess] = version(guess)
            continue
        except PackageNotFoundError:
            pass
        for dist in _distributions().get(module, []):  # the slow way: scan them all
            try:
                mine[dist] = version(dist)
            except PackageNotFoundError:
                continue
    return found


def _cache_file() -> Path | None:
    """This interpreter's file of kept versions, named by what would change them."""
    from ..runtime._files import sha256_text

    folders = [[entry, _metadata(entry)] for entry in sys.path]
    key = sha256_text(json.dumps({"python": sys.executable, "path": folders}))[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jupyter-mlops"
    return cache / f"versions_{key}.json"


def _metadata(entry: str) -> list[Any] | None:
    """What says which distributions ``sys.path`` entry ``entry`` holds: the names of the
    metadata folders and files in a folder (with the modification time of those whose name
    has no version: ``setup.py develop``'s ``NAME.egg-info`` and ``.egg-link``); a file (a
    zip, an egg) by its size and modification time; None if it is neither."""
    folder = entry or "."
    try:
        names = os.listdir(folder)
    except NotADirectoryError:
        try:
            found = os.stat(folder)
        except OSError:
            return None
        return [found.st_size, found.st_mtime_ns]
    except OSError:
        return None
    listed: list[Any] = []
    for name in sorted(n for n in names if n.endswith(_METADATA)):
        listed.append(name)
        if name.endswith((".egg-info", ".egg-link")):
            with contextlib.suppress(OSError):
                listed.append(os.stat(os.path.join(folder, name)).st_mtime_ns)
    return listed


def _read(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {m: v for m, v in data.items() if isinstance(v, dict)
            and all(isinstance(d, str) and isinstance(n, str) for d, n in v.items())}


def _write(path: Path, kept: dict[str, dict[str, str]]) -> None:
    from ..runtime._files import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(kept, sort_keys=True))
    except OSError:
        pass  # no cache folder to write: looked up each time
