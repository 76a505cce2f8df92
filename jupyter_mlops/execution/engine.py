"""A papermill engine that writes the executed notebook on a backoff, not after every cell.

papermill's default engine rewrites the whole output notebook when each cell starts and
when it completes, so a run costs time proportional to the square of the cell count (on
this kind of machine: 200 trivial cells take 16.9 s against 6.0 s for nbclient alone;
1,000 cells 336 s against 13 s). :class:`MlopsEngine` executes exactly like papermill's
``nbclient`` engine and leaves the same notebook behind (the ``parameters`` and
``injected-parameters`` cells, ``metadata.papermill`` for the notebook and each cell, and,
added by ``papermill.execute_notebook`` after the engine returns, the error banner, the
anchor and the failing cell marked) but writes it to disk far less often.

Save policy (:class:`BackoffExecutionManager`):

* always when execution starts (before the kernel starts), at the end, and when execution
  stops on an error, a timeout, a dead kernel or ``KeyboardInterrupt``;
* in between, a change (a cell starts or completes, an output arrives) is written once the
  previous write is ``interval`` seconds old; ``interval`` starts at 1 s and doubles after
  each write up to a cap of 30 s. A quick notebook is written a handful of times (1,000
  trivial cells: 4 writes, against 2,002 by papermill's engine), while in a long one what
  is on disk is never more than 30 s behind, papermill's own mid-cell autosave period. 1 s
  keeps a short notebook's file live for someone watching it; 30 s bounds what a killed run
  loses; doubling between them costs a run of T seconds about log2(T) + T/30 writes.
* a change that nothing follows (the cell after it runs silently for minutes) is still
  written when its time comes: a timer runs beside each executing cell;
* a write that takes long (huge outputs) pushes the next one back to at least four times its
  duration, as papermill's autosave does (writing costs at most ~25% of the run);
* papermill's ``autosave_cell_every`` (``--autosave-cell-every``) sets the cap; ``0`` turns
  off writes during a cell, as in papermill (writes between cells go on, capped at 30 s).

Local files are written to a temporary name in the same folder and renamed, so a run
killed at any moment leaves the previous complete notebook, never a truncated one. Other
destinations (``s3://`` and the like) go through papermill's I/O handlers.

Differences from papermill's default engine, both on the failure path: when a cell times
out (``--execution-timeout`` without interrupting), the kernel dies or the run is
interrupted, papermill's engine marks the cell ``completed`` with ``exception: false``, adds
no banner and marks every later, never-run cell ``completed`` too; this engine marks the
cell ``failed`` with ``exception: true`` (and the notebook's ``exception: true``), leaves
later cells ``pending`` and adds papermill's banner and anchor before the exception
(unchanged: ``CellTimeoutError``, ``DeadKernelError``...) propagates.

Progress: ``on_cell(index, total, cell)`` passed to ``papermill.execute_notebook(...,
engine_name="mlops", on_cell=...)`` is called as each cell (markdown cells included, as in
papermill's progress bar) is about to run; it is taken out of the keyword arguments before
nbclient sees them.

This module is imported by every ``import papermill`` (entry points are loaded eagerly), so
it imports only what papermill has already imported by then.

Use: ``papermill --engine mlops IN OUT`` or ``papermill.execute_notebook(IN, OUT,
engine_name="mlops")``; the engine is registered by the ``papermill.engine`` entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
from jupyter_core.utils import run_sync
from nbclient.exceptions import CellExecutionError


class _EngineWhileImporting:
    """The engine papermill registers if this module is imported before papermill is.

    Importing papermill loads every ``papermill.engine`` entry point, this module's
    included, while this module is still at its papermill imports: papermill then finds this
    stand-in (through the module ``__getattr__`` below), which calls the real engine, and the
    end of this module registers the real one in its place.
    """

    @classmethod
    def execute_notebook(cls, *args: Any, **kwargs: Any) -> Any:
        return MlopsEngine.execute_notebook(*args, **kwargs)

    @classmethod
    def nb_kernel_name(cls, *args: Any, **kwargs: Any) -> Any:
        return MlopsEngine.nb_kernel_name(*args, **kwargs)

    @classmethod
    def nb_language(cls, *args: Any, **kwargs: Any) -> Any:
        return MlopsEngine.nb_language(*args, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "MlopsEngine":  # only reached before the class below is defined
        return _EngineWhileImporting
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# imported only now: these imports may load this module's entry point (see above)
from jupyter_core.utils import ensure_async  # noqa: E402
from nbclient.util import run_hook  # noqa: E402
from papermill.clientwrap import PapermillNotebookClient  # noqa: E402
from papermill.engines import (  # noqa: E402
    NBClientEngine,
    NotebookExecutionManager,
    catch_nb_assignment,
    papermill_engines,
)
from papermill.iorw import LocalHandler, papermill_io  # noqa: E402
from papermill.log import logger as papermill_logger  # noqa: E402
from papermill.utils import merge_kwargs, remove_args  # noqa: E402

__all__ = ["BackoffExecutionManager", "MlopsEngine", "MlopsNotebookClient", "OnCell"]

log = logging.getLogger(__name__)

#: ``on_cell(index, total, cell)``: cell ``index`` of ``total`` is about to run.
OnCell = Callable[[int, int, nbformat.NotebookNode], None]

FIRST_INTERVAL = 1.0
"""Seconds after the first write before a change is written again."""
MAX_INTERVAL = 30.0
"""The cap of the doubling interval (papermill's default ``autosave_cell_every``)."""
_MAX_WRITE_SHARE = 4.0  # the next write waits at least this many times the last one's duration
_temp_names = itertools.count()


def write_notebook_text(text: str, path: str) -> None:
    """Write a notebook's JSON ``text`` to ``path`` the way papermill would, atomically if local.

    A local path is resolved as papermill's local handler resolves it (against the working
    directory ``papermill.execute_notebook`` was called in, not ``cwd=``), written to a
    temporary file in its folder and renamed over it; a symlink is followed, an existing
    file's permissions are kept. Any other path goes through papermill's I/O handlers.
    """
    handler = papermill_io.get_handler(path)
    if not isinstance(handler, LocalHandler):
        papermill_io.write(text, path)
        return
    # papermill's LocalHandler keeps the caller's directory here while cwd= is in effect
    base = getattr(handler, "_cwd", None) or os.getcwd()
    target = os.path.realpath(os.path.join(base, os.path.expanduser(path)))
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder {os.path.dirname(path)} doesn't exist.")
    tmp = os.path.join(folder, f".{os.path.basename(target)}.{os.getpid()}-"
                               f"{next(_temp_names)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        if os.path.exists(target):
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class BackoffExecutionManager(NotebookExecutionManager):
    """papermill's execution manager with the notebook written on a backoff.

    Every call papermill makes to :meth:`save` (cell start, cell end) records that the
    notebook changed; it is written only when ``interval`` seconds have passed since the
    last write, or when forced (:meth:`notebook_start`, :meth:`notebook_complete`,
    ``save(force=True)``). See the module docstring for the policy.
    """

    clock: Callable[[], float] = staticmethod(time.monotonic)
    """Seconds on a monotonic clock; replaceable in tests."""

    def __init__(self, nb: nbformat.NotebookNode, output_path: str | None = None,
                 log_output: bool = False, progress_bar: bool | dict[str, Any] = True,
                 autosave_cell_every: float = MAX_INTERVAL) -> None:
        super().__init__(nb, output_path=output_path, log_output=log_output,
                         progress_bar=progress_bar, autosave_cell_every=autosave_cell_every)
        self.max_interval = float(autosave_cell_every) if autosave_cell_every else MAX_INTERVAL
        self._next_interval = min(FIRST_INTERVAL, self.max_interval)
        self.interval = self._next_interval  # seconds a change waits after the last write
        self.writes = 0
        self.dirty = False
        self._last_write = float("-inf")  # monotonic time of the last write
        self._force = False

    @contextlib.contextmanager
    def _forced(self) -> Iterator[None]:
        self._force = True
        try:
            yield
        finally:
            self._force = False

    def seconds_until_due(self) -> float:
        """Seconds until a pending change may be written (0: now; ``interval`` if none)."""
        remaining = self.interval - (self.clock() - self._last_write)
        if remaining > 0:
            return remaining
        return 0.0 if self.dirty else self.interval

    def due(self) -> bool:
        """Whether a change made now would be written at once."""
        return self.clock() - self._last_write >= self.interval

    def write(self) -> None:
        """Write the notebook now (if there is an output path) and schedule the next write."""
        started = self.clock()
        if self.output_path:
            write_notebook_text(nbformat.writes(self.nb), self.output_path)
        finished = self.clock()
        self.writes += 1
        self.dirty = False
        self._last_write = finished
        self.last_save_time = self.now()
        self.interval = max(self._next_interval, _MAX_WRITE_SHARE * (finished - started))
        self._next_interval = min(self._next_interval * 2, self.max_interval)

    @catch_nb_assignment
    def save(self, force: bool = False, **kwargs: Any) -> None:
        """Record a change; write it if forced or if the last write is old enough."""
        self.dirty = True
        if force or self._force or self.due():
            self.write()

    def flush_if_due(self) -> None:
        """Write a pending change whose time has come (called by the timer during a cell)."""
        if self.dirty and self.due():
            self.write()

    @catch_nb_assignment
    def autosave_cell(self) -> None:
        """An output arrived during a cell: write it when due (never if autosave is off)."""
        if self.autosave_cell_every == 0:
            return
        self.dirty = True
        self.flush_if_due()

    @catch_nb_assignment
    def notebook_start(self, **kwargs: Any) -> None:
        """papermill's start of execution (metadata reset), always written."""
        with self._forced():
            super().notebook_start(**kwargs)

    @catch_nb_assignment
    def notebook_complete(self, **kwargs: Any) -> None:
        """papermill's end of execution (timings, statuses), always written."""
        with self._forced():
            super().notebook_complete(**kwargs)


class MlopsNotebookClient(PapermillNotebookClient):
    """papermill's nbclient wrapper with a progress hook, a write timer and marked stops."""

    def __init__(self, nb_man: NotebookExecutionManager, on_cell: OnCell | None = None,
                 on_kernel: Callable[[int], None] | None = None, **kw: Any) -> None:
        super().__init__(nb_man, **kw)
        self.on_cell = on_cell
        #: Told the pid of a kernel this client started itself, as soon as it runs.
        self.on_kernel = on_kernel
        self._flush_timer: asyncio.TimerHandle | None = None

    async def async_start_new_kernel_client(self) -> Any:
        """nbclient's start of the kernel client, ready as soon as the kernel answered
        (:mod:`.kernelready`) instead of after 0.2 s of quiet on IOPub."""
        from .kernelready import wait_ready

        assert self.km is not None
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if self.on_kernel is not None and self.owns_km and isinstance(pid, int):
            self.on_kernel(pid)
        try:
            self.kc = self.km.client()
            await ensure_async(self.kc.start_channels())
            await wait_ready(self.kc, self.startup_timeout)
        except Exception:
            await self._async_cleanup_kernel()
            raise
        self.kc.allow_stdin = False
        await run_hook(self.on_notebook_start, notebook=self.nb)
        return self.kc

    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    def _cancel_flush_timer(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None

    def _report(self, index: int, total: int, cell: nbformat.NotebookNode) -> None:
        if self.on_cell is None:
            return
        try:
            self.on_cell(index, total, cell)
        except Exception:  # progress reporting must never fail a run
            log.warning("on_cell progress callback failed at cell %d", index, exc_info=True)

    def papermill_execute_cells(self) -> None:
        """Execute the cells as papermill does; a cell that stops the run is marked failed.

        A cell error ends the loop (papermill then adds its banner); a timeout, a dead
        kernel or an interrupt is marked on the cell and propagates.
        """
        total = len(self.nb.cells)
        for index, cell in enumerate(self.nb.cells):
            self._report(index, total, cell)
            try:
                self.nb_man.cell_start(cell, index)
                self.execute_cell(cell, index)
            except CellExecutionError as ex:
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                break
            except BaseException as ex:
                # an interrupt can leave the cell's coroutine, and its timer, unfinished
                self._cancel_flush_timer()
                self.nb_man.cell_exception(self.nb.cells[index], cell_index=index, exception=ex)
                raise
            finally:
                self.nb_man.cell_complete(self.nb.cells[index], cell_index=index)

    def _flush_tick(self) -> None:
        """Timer callback, run by the event loop between nbclient's steps: write if due."""
        manager = self.nb_man
        assert isinstance(manager, BackoffExecutionManager)
        try:
            manager.flush_if_due()
        except Exception:  # the write at the end raises it; meanwhile keep executing
            log.warning("writing %s during a cell failed", manager.output_path, exc_info=True)
        self._flush_timer = asyncio.get_running_loop().call_later(
            max(0.05, manager.seconds_until_due()), self._flush_tick)

    async def async_execute_cell(self, cell: nbformat.NotebookNode, cell_index: int,
                                 execution_count: int | None = None,
                                 store_history: bool = True) -> nbformat.NotebookNode:
        """nbclient's cell execution, with pending changes written when due meanwhile.

        The timer is a loop callback (not a task): it costs microseconds per cell.
        """
        manager = self.nb_man
        if (not isinstance(manager, BackoffExecutionManager) or not manager.output_path
                or manager.autosave_cell_every == 0):
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        self._flush_timer = asyncio.get_running_loop().call_later(
            max(0.05, manager.seconds_until_due()), self._flush_tick)
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count,
                                                    store_history)
        finally:
            self._cancel_flush_timer()

    execute_cell = run_sync(async_execute_cell)


def add_error_markers(nb: nbformat.NotebookNode) -> bool:
    """Add papermill's banner and anchor for the first cell marked as failed; True if added.

    papermill adds them itself when a cell raises; this covers the stops it leaves unmarked
    (a timeout, a dead kernel, an interrupt), with papermill's own texts and tag.
    """
    # papermill.execute is still being imported when papermill loads this engine's entry point
    from papermill.execute import ERROR_ANCHOR_MSG, ERROR_MARKER_TAG, ERROR_MESSAGE_TEMPLATE

    for index, cell in enumerate(nb.cells):
        if cell.get("metadata", {}).get("papermill", {}).get("exception") is True:
            banner = nbformat.v4.new_markdown_cell(
                ERROR_MESSAGE_TEMPLATE % str(cell.get("execution_count")))
            banner.metadata["tags"] = [ERROR_MARKER_TAG]
            anchor = nbformat.v4.new_markdown_cell(ERROR_ANCHOR_MSG)
            anchor.metadata["tags"] = [ERROR_MARKER_TAG]
            nb.cells.insert(index, anchor)
            nb.cells.insert(0, banner)
            return True
    return False


class MlopsEngine(NBClientEngine):
    """papermill's nbclient engine, writing the output notebook on a backoff.

    Registered as ``mlops``: ``papermill --engine mlops IN OUT``. Accepts every argument
    papermill's nbclient engine accepts, plus ``on_cell(index, total, cell)``; with ``km``
    (a kernel manager whose kernel runs) the notebook runs in that kernel, left running.
    """

    manager_class: type[BackoffExecutionManager] = BackoffExecutionManager
    """The execution manager; a subclass may count or redirect writes."""

    @classmethod
    def execute_notebook(cls, nb: nbformat.NotebookNode, kernel_name: str,
                         output_path: str | None = None,
                         progress_bar: bool | dict[str, Any] = True, log_output: bool = False,
                         autosave_cell_every: float = MAX_INTERVAL,
                         on_cell: OnCell | None = None,
                         **kwargs: Any) -> nbformat.NotebookNode:
        """Execute ``nb`` in kernel ``kernel_name``, writing it to ``output_path`` on a backoff.

        The structure is papermill's ``Engine.execute_notebook``: wrap the notebook in an
        execution manager, start, run, and complete it whatever happens. A stop that
        papermill would leave unmarked gets the error banner before the exception propagates.
        """
        nb_man = cls.manager_class(nb, output_path=output_path, log_output=log_output,
                                   progress_bar=progress_bar,
                                   autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        stopped = False
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output,
                                         on_cell=on_cell, **kwargs)
        except BaseException:
            stopped = True
            raise
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
            if stopped and add_error_markers(nb_man.nb):
                nb_man.save(force=True)
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(cls, nb_man: NotebookExecutionManager, kernel_name: str,
                                 log_output: bool = False, stdout_file: Any = None,
                                 stderr_file: Any = None, start_timeout: float = 60,
                                 execution_timeout: float | None = None,
                                 **kwargs: Any) -> nbformat.NotebookNode:
        """Run the managed notebook with :class:`MlopsNotebookClient` (arguments as
        papermill's; among ``kwargs``, ``on_cell`` is told of each cell as it starts, and a
        kernel this starts appends its own stdout and stderr to ``kernel_log``). A kernel this
        starts has the debugger's warnings off (:func:`.stepexec.kernel_environ`)."""
        from .kernellog import output_to
        from .stepexec import kernel_environ

        on_cell: OnCell | None = kwargs.pop("on_cell", None)
        on_kernel: Callable[[int], None] | None = kwargs.pop("on_kernel", None)
        kernel_log: Path | None = kwargs.pop("kernel_log", None)
        kwargs = remove_args(["input_path"], **kwargs)
        safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
        final_kwargs = merge_kwargs(
            safe_kwargs,
            timeout=execution_timeout or kwargs.get("timeout"),
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=papermill_logger,
            log_output=log_output,
            stdout_file=stdout_file,
            stderr_file=stderr_file,
        )
        client = MlopsNotebookClient(nb_man, on_cell=on_cell, on_kernel=on_kernel,
                                     **final_kwargs)
        try:
            # nbclient passes these on to the kernel's start, and jupyter_client to Popen
            with output_to(kernel_log if client.owns_km else None) as output:
                if not client.owns_km:
                    return client.execute(**output)
                return client.execute(env=kernel_environ(), **output)
        finally:
            if not client.owns_km and client.kc is not None:
                # given a started kernel (``km=``), nbclient leaves its own client open
                client.kc.stop_channels()


# papermill registered the stand-in if it was imported by this module: register the engine
for _name, _engine in list(getattr(papermill_engines, "_engines", {}).items()):
    if _engine is _EngineWhileImporting:
        papermill_engines.register(_name, MlopsEngine)
