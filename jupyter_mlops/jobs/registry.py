"""Which run stores hold jobs, so that a scheduler started with no folder finds them all.

Jobs live in each pipeline's own store; this user-level list only points at those stores
(``JUPYTER_DATA_DIR/mlops/schedules.json``, or the file ``JUPYTER_MLOPS_SCHEDULES`` names).
``jupyter mlops schedule`` adds a store, deleting a store's last job removes it, and a
scheduler drops a store that is gone. The list is rewritten whole under a lock, through a
temporary file and a rename, so two commands at once lose neither entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["registry_file", "registered", "register", "unregister"]


def registry_file() -> Path:
    """Where the list of stores with jobs is kept."""
    named = os.environ.get("JUPYTER_MLOPS_SCHEDULES")
    if named:
        return Path(named)
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "mlops" / "schedules.json"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: one command at a time is the user's to ensure
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def registered() -> list[Path]:
    """The stores listed, in the order they were added (an unreadable list is empty)."""
    try:
        data = json.loads(registry_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    stores = data.get("stores") if isinstance(data, dict) else None
    return [Path(s) for s in stores if isinstance(s, str)] if isinstance(stores, list) else []


def _write(stores: list[Path]) -> None:
    path = registry_file()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"stores": [str(s) for s in stores]}, indent=1),
                         encoding="utf-8")
    os.replace(temporary, path)


def register(store: Path) -> None:
    """Add ``store`` to the list (once)."""
    store = Path(store).resolve()
    with _locked(registry_file()):
        stores = registered()
        if store not in stores:
            _write([*stores, store])


def unregister(store: Path) -> None:
    """Take ``store`` off the list."""
    store = Path(store).resolve()
    with _locked(registry_file()):
        stores = registered()
        if store in stores:
            _write([s for s in stores if s != store])
