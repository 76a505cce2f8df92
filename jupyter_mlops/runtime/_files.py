"""Writing files so that a failure never leaves one half-written: temporary name, then rename."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """This process's umask, as it is now. Linux says it in /proc; elsewhere it can only be
    read by setting it, done under a lock and put back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a file created with ``open`` gets here (0o644 under umask 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode a folder created with ``mkdir`` gets here (0o755 under umask 022)."""
    return 0o777 & ~_umask()


def temporary_file(path: Path) -> tuple[int, str]:
    """A temporary file beside ``path`` to be renamed onto it, with the mode ``open`` would
    give ``path``: ``mkstemp`` makes it 0o600, which other users (an Airflow worker, a web
    server, a container's user) could not read."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, file_mode())
    return fd, tmp


#: Blocks written, and files read, from this size on are hashed in a thread while they are
#: written or parsed (hashlib, writing and pyarrow let go of the GIL); smaller ones in turn.
#: Writing a 400 MB array took 0.33-0.38 s so against 0.40-0.41 s; an Arrow file's blocks
#: (64K rows, 512 KB a float column) gained nothing from a thread in the same test.
HASH_BESIDE = 8 << 20
_HASH_THREAD: Any = None


def hash_thread() -> Any:
    """One thread for hashing beside writing or parsing, made on first use."""
    global _HASH_THREAD
    if _HASH_THREAD is None:
        from concurrent.futures import ThreadPoolExecutor

        _HASH_THREAD = ThreadPoolExecutor(1, thread_name_prefix="mlops-hash")
    return _HASH_THREAD


class _Hashing:
    """A binary file that hashes what is written to it, as it is written; a writer that
    seeks back (zip archives go back to fill in headers) makes the hash unknown."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._written = 0
        self.digest: Any = hashlib.sha256()

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if self.digest is None:
            count = self._handle.write(view)
        elif view.nbytes < HASH_BESIDE:
            self.digest.update(view)
            count = self._handle.write(view)
        else:  # the block is hashed before this returns: the writer may reuse its memory then
            hashed = hash_thread().submit(self.digest.update, view)
            try:
                count = self._handle.write(view)
            finally:
                hashed.result()
        self._written += count
        return count

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        if position != self._written:  # anywhere but the end: what follows overwrites
            self.digest = None
        return position

    def __getattr__(self, name: str) -> Any:  # tell, flush, fileno, closed, ...
        return getattr(self._handle, name)


def write_with(path: Path, writer: Callable[[IO[bytes]], Any],
               vet: Callable[[Path], Any] | None = None) -> str | None:
    """Let ``writer`` fill a temporary file beside ``path``, then rename it into place
    (unless ``vet``, given the temporary file's path, raises: ``path`` is then left as it
    was). Returns the sha256 of what was written, hashed on the way (None if the writer
    sought back, when only reading the file again can tell)."""
    fd, tmp = temporary_file(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            hashing = _Hashing(handle)
            writer(hashing)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        if vet is not None:
            vet(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return None if hashing.digest is None else hashing.digest.hexdigest()


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_with(path, lambda handle: handle.write(payload))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def open_once(path: str | Path) -> int:
    """A descriptor of the file at ``path``, to hash and read through the same one: a name
    renamed over between a hash and a read would give the read another file. OSError unless
    it is a regular file (opened without waiting, so a FIFO put there cannot hang a read)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def sha256_fd(fd: int, chunk: int = 1 << 20) -> str:
    """The sha256 of the whole file open as ``fd`` (read by position: the descriptor's own
    offset is left alone)."""
    digest, offset = hashlib.sha256(), 0
    while block := os.pread(fd, chunk, offset):
        digest.update(block)
        offset += len(block)
    return digest.hexdigest()


def through(fd: int, path: str | Path) -> str:
    """A name that opens the very file ``fd`` is open on (Linux's ``/proc/self/fd``, the BSDs'
    ``/dev/fd``), for readers that take a name; ``path`` itself where there is none."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return f"{folder}/{fd}"
    return str(path)


def sha256_text(text: str) -> str:
    """The sha256 of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
