"""The kernel zygote's own process: imports once, then forks a kernel per step.

Started by :class:`.zygote.Zygote` with the pipeline kernel's Python, in the notebook's
folder, with the environment a kernel gets. It imports IPython's kernel, then, on request,
the modules the steps import first (:func:`.stepexec.warm_plan`); each ``fork`` request
forks a child that becomes an ordinary IPython kernel (``IPKernelApp``) on the connection
file it is given. A forked kernel so finds those modules imported, as a kernel that ran the
same imports would, at the cost of a ``fork()`` instead of a new interpreter and its imports.
Python's own ``multiprocessing`` "forkserver" preloads modules the same way.

What an import ahead must not do, since it then would not behave as in a kernel: print or
warn (that output would be missing from the step's notebook), or ask the running IPython
shell more than whether it is a kernel (pandas asks that, and sets its display width from
it). During imports, the shell an import sees is a stand-in that answers only that; any
other question, any output, any warning, and the zygote refuses the module and stops
importing: the client then stops using this zygote.

Protocol: JSON lines in on fd ``argv[1]``, out on fd ``argv[2]``. In: ``{"op": "import",
"modules": [[name, [names], optional], ...]}`` -> ``{"ok": bool, "why": str}``;
``{"op": "fork", "argv": [...], "cwd": str, "env": {name: value or null}, "log": str or
null}`` -> ``{"pid": int}`` (``env`` sets or removes the variables a kernel's launch sets per
kernel; ``log``, a file the kernel appends its own stdout and stderr to);
``{"op": "spawn", "modules": [...]}`` -> ``{"pid": int or null}``: a successor zygote,
forked from this one, imports ``modules`` and answers on a spare channel as to an
``import``, then serves requests there; ``{"op": "keep", "socket": str, "idle": seconds,
"log": str, "modules": [...], "while": str or null}`` -> ``{"pid": int}``: a process forked
from this one imports those of ``modules`` it has not, then keeps what it imported warm for
later runs (:mod:`.keeper`), while the file ``while`` names is there. Unasked:
``{"exit": pid, "code": int}`` when a forked kernel ends. End of input ends the zygote.
"""

from __future__ import annotations

import builtins
import gc
import io
import json
import os
import select
import signal
import sys
import tempfile
import warnings
from typing import Any

from .localcheck import LOCAL_CHECK

_checks: dict[str, Any] = {}
exec(compile(LOCAL_CHECK, "<jupyter-mlops local check>", "exec"), _checks)

#: The import requests this process (and the zygotes it was forked from) did without a
#: difference: a warm zygote (:mod:`.keeper`) tells each run what it need not ask again.
IMPORTED: list[list[Any]] = []
#: The file each imported module came from, and each folder on ``sys.path``, with its
#: modification time and size when it was imported (None: it did not exist): a warm zygote
#: holding code older than its file must not serve a run (:func:`changed`).
FILES: dict[str, tuple[int, int] | None] = {}
#: What each folder on ``sys.path`` held then: a folder whose time changed only as an import
#: made its ``__pycache__`` (a module of it imported for the first time, where bytecode is
#: written) has not changed.
FOLDERS: dict[str, frozenset[str] | None] = {}
_CACHE = "__pycache__"


def _stat(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _listing(path: str) -> frozenset[str] | None:
    try:
        return frozenset(os.listdir(path))
    except OSError:
        return None


def _cache_made(path: str) -> bool:
    """Whether folder ``path``'s only change since it was noted is its ``__pycache__``,
    made since (by an import writing bytecode)."""
    was = FOLDERS.get(path)
    return was is not None and _CACHE not in was and _listing(path) == was | {_CACHE}


def note_files() -> None:
    """Note the files of the modules imported since, and the folders now on ``sys.path``
    (``''``, the working folder, is the kernel's own, and its modules are never imported
    ahead)."""
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path not in FILES:
            FILES[path] = _stat(path)
    for path in sys.path:
        if path and path not in FILES:
            FILES[path] = _stat(path)
            FOLDERS[path] = listing = _listing(path)
            # a .pth file rewritten in place (an editable install moved) leaves the names
            for name in sorted(listing or ()):
                if name.endswith(".pth"):
                    FILES[os.path.join(path, name)] = _stat(os.path.join(path, name))


def changed() -> str:
    """Which noted file or folder changed since it was noted (a package installed, upgraded
    or edited), or ""."""
    for path, was in FILES.items():
        now = _stat(path)
        if now != was and not (now and was and _cache_made(path)):
            return f"{path} {'changed' if now and was else 'appeared' if now else 'is gone'}"
    return ""


class _Forward(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` during imports: records writes; later (a logger that
    kept it) writes go to whatever the kernel has made ``sys.stdout``/``sys.stderr``."""

    def __init__(self, name: str, written: list[str]) -> None:
        self.name, self.written, self.importing = name, written, True

    def write(self, text: str) -> int:
        if self.importing:
            self.written.append(text)
            return len(text)
        return getattr(sys, self.name).write(text)

    def flush(self) -> None:
        if not self.importing:
            getattr(sys, self.name).flush()

    def isatty(self) -> bool:
        return False


def _stand_in(questions: list[str]) -> Any:
    """An object that looks like the kernel's shell to imports; it records in ``questions``
    what they ask beyond whether it is a kernel."""
    from ipykernel.zmqshell import ZMQInteractiveShell as Shell

    class Probe:
        def __getattr__(self, name: str) -> Any:
            questions.append(f"kernel.{name}")
            raise AttributeError(name)

    probe = Probe()

    class ZMQInteractiveShell(Shell):  # type: ignore[misc]
        def __getattribute__(self, name: str) -> Any:
            if name == "kernel":
                return probe
            if name == "__class__":
                return type(self)
            questions.append(name)
            raise AttributeError(name)

    return object.__new__(ZMQInteractiveShell)


def import_ahead(modules: list[list[Any]]) -> dict[str, Any]:
    """Import ``modules`` as a kernel's warm-up would; refuse on any sign of a difference."""
    import IPython
    import IPython.core.getipython as getipython
    from IPython.core.interactiveshell import InteractiveShell

    questions: list[str] = []
    shell = _stand_in(questions)
    real = getipython.get_ipython

    def get_ipython() -> Any:  # kept by modules that imported it now: real once a shell runs
        return InteractiveShell.instance() if InteractiveShell.initialized() else shell

    written: list[str] = []
    streams = (sys.stdout, sys.stderr)
    forwards = (_Forward("stdout", written), _Forward("stderr", written))
    saved_fds = (os.dup(1), os.dup(2))
    why = ""
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            sys.stdout, sys.stderr = forwards
            builtins.get_ipython = get_ipython  # type: ignore[attr-defined]
            builtins.__IPYTHON__ = True  # type: ignore[attr-defined]
            IPython.get_ipython = getipython.get_ipython = get_ipython
            with warnings.catch_warnings(record=True) as caught:
                for name, names, optional in modules:
                    try:
                        if not _checks["_local"](name.partition(".")[0]):
                            __import__(name, fromlist=list(names))
                    except Exception as err:
                        if not optional or questions:
                            why = f"importing {name} failed: {type(err).__name__}"
                    sys.stdout.flush()
                    if questions:
                        why = f"importing {name} asked the shell {questions[:3]}"
                    elif caught or written or os.fstat(sink.fileno()).st_size:
                        why = why or f"importing {name} printed or warned"
                    if why:
                        break
                    IMPORTED.append([name, list(names), optional])
                    note_files()
        finally:
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            for fd in saved_fds:
                os.close(fd)
            sys.stdout, sys.stderr = streams
            for forward in forwards:
                forward.importing = False
            del builtins.get_ipython, builtins.__IPYTHON__  # type: ignore[attr-defined]
            IPython.get_ipython = getipython.get_ipython = real
    return {"ok": not why, "why": why}


def _become_kernel(request: dict[str, Any]) -> None:
    """In the forked child (in its own session): turn into an IPython kernel, then exit with
    its status."""
    code = 1
    try:
        # What the zygote imported lives as long as the kernel: kept out of the collector's
        # sight, a full collection walks only the kernel's own objects (IPython's exit runs
        # one, which took 0.09 s over pandas' and scikit-learn's; 5 ms so), and pages shared
        # with the zygote are not copied for the collector's bookkeeping
        gc.freeze()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if request.get("log"):
            output_to(request["log"])
        os.chdir(request["cwd"])
        # the zygote's environment, with what imports changed in it (scikit-learn sets
        # KMP_* variables), and the kernel's own variables
        for key, value in request["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if "numpy.random" in sys.modules:  # a fresh interpreter seeds its own, from the OS
            sys.modules["numpy.random"].seed()
        import ipykernel_launcher
        from ipykernel import kernelapp

        sys.argv = [ipykernel_launcher.__file__, *request["argv"]]
        # read from the environment when the zygote imported ipykernel, before it was set
        parent = int(os.environ.get("JPY_PARENT_PID") or 0)
        # what launch_instance does, keeping the app to end its threads in order below
        app = kernelapp.IPKernelApp.instance(parent_handle=parent)
        app.initialize()
        app.start()
        _end_channel_threads(app)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        # a kernel that failed to start (a port taken since it was chosen) ends now: ipykernel's
        # exit functions would wait forever to end the ZeroMQ context of its half-made sockets,
        # and the pool starts a kernel afresh once this one is seen dead
        os._exit(1)
    finally:
        try:  # what interpreter shutdown does: wait for the user's threads, run atexit
            import atexit
            import threading

            threading._shutdown()  # type: ignore[attr-defined]
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def output_to(path: str) -> None:
    """Send this process's stdout and stderr (file descriptors 1 and 2) to the end of ``path``:
    a kernel started by jupyter_client gets them from ``Popen`` the same way, while a forked
    one would otherwise share the zygote's."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _end_channel_threads(app: Any, timeout: float = 10.0) -> None:
    """Let the kernel's control (and shell channel) thread finish before the exit functions
    run.

    A shutdown request is handled on the control thread: it stops the main loop, then
    publishes its ``idle`` status through the IOPub thread. Once the main loop returns,
    ipykernel's exit functions stop that IOPub thread and close the sockets it is woken
    through, while the control thread may not have published yet: its send then fails on a
    closed socket (``ZMQError: Socket operation on non-socket``, logged by tornado as an
    uncaught exception). Ended here first, as ipykernel's own ``close`` ends them only after
    the IOPub thread, nothing publishes once IOPub is closing.
    """
    for name in ("control_thread", "shell_channel_thread"):
        thread = getattr(app, name, None)
        if thread is None or not thread.is_alive():
            continue
        thread.stop()  # after the callbacks already queued: the request ends first
        thread.join(timeout)


def _forked(channels: tuple[int, ...]) -> int:
    """``os.fork()``; in the child, ``channels`` (the parent's pipes) closed."""
    with warnings.catch_warnings():
        # Python 3.12+ counts the idle threads of BLAS libraries, which are fork-safe
        # (pthread_atfork), as in multiprocessing's fork start method
        warnings.filterwarnings("ignore", ".*multi-threaded.*fork", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        for fd in channels:
            os.close(fd)
    return pid


def detached(channels: tuple[int, ...]) -> int:
    """``os.fork()`` into a child in its own session (as jupyter_client starts kernels: a
    signal to its group reaches its children, and a signal to ours does not reach it), with
    ``channels`` closed there; returns once the child is in its session (or gone)."""
    ready_r, ready_w = os.pipe()
    pid = _forked((*channels, ready_r))
    if pid == 0:
        try:
            os.setsid()
        finally:
            os.close(ready_w)  # its closing tells the parent setsid is done
        return 0
    os.close(ready_w)
    os.read(ready_r, 1)  # end of file
    os.close(ready_r)
    return pid


def _fork(request: dict[str, Any], channels: tuple[int, ...]) -> dict[str, Any]:
    pid = detached(channels)
    if pid == 0:
        _become_kernel(request)
    return {"pid": pid}


def _keep(request: dict[str, Any], channels: tuple[int, ...]) -> dict[str, Any]:
    pid = detached(channels)
    if pid == 0:
        code = 0
        signal.set_wakeup_fd(-1)  # its fd was closed with the channels
        try:
            from .keeper import keep

            keep(request["socket"], float(request["idle"]), request["log"],
                 request.get("modules", []), request.get("while"))
        except BaseException:  # a bug of ours: into the keeper's log (its stderr by now)
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
            code = 1
        finally:
            os._exit(code)
    return {"pid": pid}


def _add_working_folder() -> None:
    """Put the working folder (``''``) on ``sys.path`` where an IPython kernel puts it: before
    the first site-packages folder (unless Python runs with ``-P``)."""
    # sys.flags.safe_path (-P) exists from Python 3.11; older kernels have no -P
    if "" in sys.path or getattr(sys.flags, "safe_path", False):
        return
    at = next((i for i, p in enumerate(sys.path)
               if os.path.basename(p) in ("site-packages", "dist-packages")), 0)
    sys.path.insert(at, "")


def main() -> None:
    """Serve import, fork and spawn requests until the client closes its end.

    Arguments: the request and reply fds, then those of spare channels, a pair each
    (``R,W``): a ``spawn`` request forks a successor zygote that imports more and answers
    on the first spare channel, while this one goes on forking kernels.
    """
    spares = [tuple(int(fd) for fd in pair.split(",")) for pair in sys.argv[3:]]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runner's to handle
    _add_working_folder()
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # what every kernel imports first, and what its start imports (the debugger, IPython's
    # completion and inspection, the store magic) before any cell runs
    for name in ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell",
                 "ipykernel.debugger", "IPython.core.debugger", "IPython.core.completerlib",
                 "IPython.core.oinspect", "IPython.extensions.storemagic", "sqlite3"):
        try:
            __import__(name)
        except ImportError:  # another version of ipykernel: its start imports it then
            pass
    note_files()
    serve(int(sys.argv[1]), int(sys.argv[2]), spares)


def serve(requests: int, replies: int, spares: list[tuple[int, ...]],
          first: list[list[Any]] | None = None) -> None:
    """The request loop of one zygote; a successor first imports ``first`` and says how."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)

    def send(message: dict[str, Any]) -> None:
        os.write(replies, (json.dumps(message) + "\n").encode())

    if first is not None:
        answer = import_ahead(first)
        send(answer)
        if not answer["ok"]:
            return
    own = (requests, replies, wake_r, wake_w)
    pending = b""
    while True:
        ready, _, _ = select.select([requests, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 512)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                send({"exit": pid, "code": os.waitstatus_to_exitcode(status)})
        if requests in ready:
            data = os.read(requests, 65536)
            if not data:
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                channels = (*own, *(fd for pair in spares for fd in pair))
                if request["op"] == "import":
                    send(import_ahead(request["modules"]))
                elif request["op"] == "fork":
                    send(_fork(request, channels))
                elif request["op"] == "keep":
                    send(_keep(request, channels))
                elif not spares:
                    send({"pid": None})
                else:
                    channel, rest = spares[0], spares[1:]
                    pid = _forked(own)  # the successor keeps the spares after its own
                    if pid == 0:
                        serve(*channel, rest, request["modules"])
                        os._exit(0)
                    for fd in channel:
                        os.close(fd)
                    spares = rest
                    send({"pid": pid})
