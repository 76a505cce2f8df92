"""The heavy imports that two threads of a run would otherwise make at the same moment.

A step's thread imports papermill (and through it nbclient and jupyter_client) when the step
starts, while the kernel pool's thread imports jupyter_client to start the next step's
kernel. Python locks each module while it is imported; two threads importing modules of one
package that import each other can each hold a lock the other waits for, and Python breaks
that deadlock by handing one of them a module still half made: "cannot import name
'AsyncKernelManager' from partially initialized module 'jupyter_client.manager'". One lock
around both threads' imports makes them take turns; once imported, they cost nothing.
They stay lazy, so a run whose steps are all cached imports none of them.

What starts kernels is imported first, in a turn of its own: the pool's thread, waiting to
start the first step's kernel, then forks it while the step's thread imports the rest of
papermill (a re-run of one late step had its kernel asked for only once papermill was
imported: 0.2-0.3 s later).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

__all__ = ["papermill_and_engine", "kernel_manager_class", "papermill_without_hdfs",
           "defer_iri_grammars"]

_IMPORTING = threading.Lock()
#: ``AsyncKernelManager`` once it and the modules that start kernels are wholly imported (a
#: module half made is in ``sys.modules`` too, so that is no sign).
_manager_class: Any = None
#: Guards :data:`_manager_class` and :data:`_importer`, the thread importing it.
_MANAGER = threading.Condition()
_importer: int | None = None
#: Whether papermill is imported without its HDFS handler (:func:`papermill_without_hdfs`).
_without_hdfs = False


def papermill_without_hdfs() -> None:
    """In this process, import papermill without ``pyarrow.fs`` (its handler of ``hdfs://``
    paths): a run's processes give papermill local paths only, and importing pyarrow (with
    numpy) was 0.07 s of the 0.25 s papermill takes, before a run's first step. Not done
    when jupyter-mlops is a library in someone else's process (a Dask worker, a server)."""
    global _without_hdfs
    _without_hdfs = True


class _NoPyarrowInThisThread:
    """An import finder that says pyarrow is missing to the thread that made it, and only
    to it: another thread of the process may import pyarrow meanwhile (a frame's file)."""

    def __init__(self) -> None:
        self.thread = threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        """Refuse pyarrow and its modules in the importing thread; leave the rest alone."""
        if threading.get_ident() == self.thread and name.partition(".")[0] == "pyarrow":
            raise ModuleNotFoundError(f"No module named {name!r} (left out: papermill is "
                                      "imported without its HDFS handler)", name=name)


#: jsonschema's checker of the ``iri`` string format, whose import compiles its grammars.
_IRI = "rfc3987_syntax"


class _Deferred(types.ModuleType):
    """``rfc3987_syntax`` until something calls it or asks for a name it does not hold: then
    the real module, imported at that moment, serves that and every later call."""

    def __init__(self, spec: Any) -> None:
        super().__init__(_IRI)
        self.__spec__ = spec
        if spec.submodule_search_locations is not None:  # its modules stay importable
            self.__path__ = list(spec.submodule_search_locations)
        self._lock = threading.Lock()
        self._real: types.ModuleType | None = None

    def _load(self) -> types.ModuleType:
        with self._lock:
            if self._real is None:
                if sys.modules.get(_IRI) is self:
                    del sys.modules[_IRI]
                self._real = importlib.import_module(_IRI)
        return self._real

    def is_valid_syntax(self, term: str, value: str) -> bool:
        """The real ``is_valid_syntax`` (the one name jsonschema imports), loaded now; True
        where it cannot be imported (a broken ``lark``), as jsonschema, finding no checker
        of the format at its own import, would have passed every value."""
        try:
            real = self._load()
        except ImportError:
            return True
        return bool(real.is_valid_syntax(term, value))

    def __getattr__(self, name: str) -> Any:
        # any other name (``__all__`` of a star import, ``__file__``) is the real module's:
        # the import system's own questions (``__path__``, ``__spec__``) are answered above
        return getattr(self._load(), name)

    def __dir__(self) -> list[str]:
        return dir(self._load())


def defer_iri_grammars() -> None:
    """Have jsonschema, when this process imports it (nbformat does, with papermill), find
    ``rfc3987_syntax`` deferred: its grammars compile when an ``iri`` string is first checked,
    not at import. Installed with JupyterLab, it compiled them at import: 1.0 s of the 1.3 s
    papermill took to import here (2.6 s of CPU with two processes importing at once), on
    every Dask worker; nothing a run validates checks that format. Unlike the command line's
    :func:`~jupyter_mlops.run.startup.skip_slow_optional_imports`, the checker is kept, so
    this suits a process others share (a Dask worker). Nothing is done where jsonschema or
    ``rfc3987_syntax`` is already imported, or left out, or not installed."""
    if "jsonschema" in sys.modules or _IRI in sys.modules:
        return
    spec = importlib.util.find_spec(_IRI)
    if spec is not None:
        sys.modules[_IRI] = _Deferred(spec)


def papermill_and_engine() -> Any:
    """papermill, with the modules its ``mlops`` engine needs already imported (and
    ``rfc3987_syntax`` deferred: :func:`defer_iri_grammars`)."""
    kernel_manager_class()
    with _IMPORTING:
        defer_iri_grammars()
        hide = None
        if _without_hdfs and "pyarrow" not in sys.modules and "papermill" not in sys.modules:
            # papermill imports it inside a `try`, and says "install pyarrow" if it is used
            hide = _NoPyarrowInThisThread()
            sys.meta_path.insert(0, hide)
        try:
            import papermill
        finally:
            if hide is not None:
                sys.meta_path.remove(hide)

        from . import engine  # noqa: F401 (papermill finds it by entry point, later)

        return papermill


def kernel_manager_class() -> Any:
    """jupyter_client's ``AsyncKernelManager``, with the modules that start kernels.

    A thread that finds another importing them waits for that import only, not on the lock
    of the imports: the importer goes on to import papermill under that lock at once, and a
    thread waiting for the lock (the pool's, to fork the first kernel) then waited for
    papermill too, in about half of the runs (Python's locks are not fair)."""
    global _manager_class, _importer
    with _MANAGER:
        while _manager_class is None and _importer is not None:
            _MANAGER.wait()
        if _manager_class is not None:
            return _manager_class
        _importer = threading.get_ident()
    found = None
    try:
        with _IMPORTING:
            from jupyter_client import AsyncKernelManager

            from . import forked, kernellog, kernelready, kernelspecs, zygote  # noqa: F401

            found = AsyncKernelManager
    finally:
        with _MANAGER:  # a failed import leaves the next caller to try again, and say why
            _manager_class, _importer = found, None
            _MANAGER.notify_all()
    return found
