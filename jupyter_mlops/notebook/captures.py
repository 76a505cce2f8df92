"""The capture record: what the notebook saw, in a small git-friendly file beside it.

``<stem>.mlops.json`` holds the parameters, metrics (with thresholds) and models that the
``%%mlops`` magics captured; model files live in ``<stem>.mlops/``. No raw data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import MlopsError
from ..runtime._files import atomic_write

RECORD_VERSION = 1
_EMPTY: dict[str, Any] = {"version": RECORD_VERSION, "params": {}, "data": {}, "models": {},
                          "metrics": {}, "kernel": {}}


def record_path(notebook: str | Path) -> Path:
    """``churn.ipynb`` -> ``churn.mlops.json`` beside it."""
    path = Path(notebook)
    return path.with_name(f"{path.stem}.mlops.json")


def model_folder(notebook: str | Path) -> Path:
    """Where the captured models of ``notebook`` are saved."""
    path = Path(notebook)
    return path.with_name(f"{path.stem}.mlops")


def read_record(notebook: str | Path) -> dict[str, Any]:
    """The record of ``notebook`` (an empty one when nothing was captured yet)."""
    path = record_path(notebook)
    if not path.is_file():
        return json.loads(json.dumps(_EMPTY))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise MlopsError(f"{path} nests too deeply to be a capture record; delete it and run "
                         "the marked cells again") from None
    except (OSError, ValueError) as err:
        raise MlopsError(f"{path} is not a readable capture record ({err}); delete it and run "
                         "the marked cells again") from None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
        raise MlopsError(f"{path} is not a capture record of this jupyter-mlops version; delete "
                         "it and run the marked cells again")
    for key in ("params", "data", "models", "metrics", "kernel"):
        section = data.setdefault(key, {})
        # entries are objects (the kernel section holds lists); anything else is a hand-edited
        # or damaged file, which export and the sidebar must not trip over
        if not isinstance(section, dict) or (
                key != "kernel" and not all(isinstance(v, dict) for v in section.values())):
            raise MlopsError(f"{path}: section `{key}` is not what jupyter-mlops writes; delete "
                             "the file and run the marked cells again")
    return data


def update_record(notebook: str | Path, section: str, entries: dict[str, Any],
                  kernel_names: list[str] | None = None) -> Path:
    """Merge ``entries`` into one section of the record and write it atomically; with
    ``kernel_names``, also remember which variables the kernel held (to tell hidden state
    at export)."""
    data = read_record(notebook)
    data[section].update(entries)
    if kernel_names is not None:
        data["kernel"] = {"names": sorted(kernel_names)}
    path = record_path(notebook)
    # sorted keys and one item a line keep diffs of the record small in version control
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True, allow_nan=False) + "\n")
    return path


#: The record earlier versions wrote in the working folder when a kernel run by papermill or
#: nbconvert was not told its notebook (the record of a ``notebook.ipynb`` that is not there).
STRAY_RECORD = "notebook.mlops.json"


def stray_record(notebook: str | Path, code_keys: set[str] | None = None,
                 folders: tuple[Path, ...] = ()) -> tuple[Path, bool | None] | None:
    """A stray ``notebook.mlops.json`` that may hold ``notebook``'s captures: (its path,
    whether its data captures come from cells of ``notebook``, None when it cannot tell).

    Only when ``notebook`` has no record of its own; looked for beside it and in
    ``folders`` (the working folder), and only where no ``notebook.ipynb`` owns it.
    """
    path = Path(notebook)
    if record_path(path).exists():
        return None
    for folder in dict.fromkeys((path.parent, *folders)):
        stray = folder / STRAY_RECORD
        try:
            if not stray.is_file() or (folder / "notebook.ipynb").exists():
                continue
        except OSError:
            continue
        if stray.resolve() == record_path(path).resolve():
            continue
        try:
            data = read_record(folder / "notebook.ipynb")
        except MlopsError:
            return stray, None
        keys = {e.get("cell_key") for e in data["data"].values()} - {None}
        if not keys or code_keys is None:
            return stray, None
        return stray, bool(keys & code_keys)
    return None
