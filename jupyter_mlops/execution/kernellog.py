"""Where the processes behind a run's steps write their own output: logs in the run folder.

What a step's code prints reaches its executed notebook over ZeroMQ; a kernel process's own
stdout and stderr carry something else: ipykernel's and tornado's complaints (a traceback
logged while the kernel shuts down), a crash in compiled code. Inherited, they would land on
the terminal of whoever started the run, between its progress lines, for kernels that did
their work. So each step's kernel writes to ``RUN/logs/kernel-STEP.log`` (the zygote it may
be forked from, :mod:`.zygote`, to ``RUN/logs/zygote.log``), and that output is shown only
when it explains a failure: a step whose kernel died or never answered quotes its last line.
Logs left empty are removed when the run ends.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

LOG_FOLDER = "logs"


def kernel_log(run_folder: str | Path, step: str) -> Path:
    """The log of step ``step``'s kernel in ``run_folder``."""
    return Path(run_folder) / LOG_FOLDER / f"kernel-{step}.log"


def zygote_log(run_folder: str | Path) -> Path:
    """The log of the run's kernel zygotes."""
    return Path(run_folder) / LOG_FOLDER / "zygote.log"


def open_log(path: Path) -> BinaryIO:
    """``path`` opened for appending (a resumed run adds to its logs), its folder made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "ab", buffering=0)


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[dict[str, BinaryIO]]:
    """The ``stdout``/``stderr`` arguments that send a kernel's output to the log ``path``, as
    jupyter_client passes them on to ``Popen`` (none, for ``None``: inherited); the file is
    closed on exit, the kernel keeps its own descriptor."""
    if path is None:
        yield {}
        return
    with open_log(path) as log:
        yield {"stdout": log, "stderr": log}


#: How the debugger (pydevd, which ipykernel imports) begins each line it prints: seconds
#: since it started, then `` - ``; never what explains a failure.
_DEBUGGER_LINE = re.compile(r"\d+\.\d+s - ")


def debugger_noise(line: str) -> bool:
    """Whether ``line`` is the debugger's own message (its frozen-modules warning)."""
    return bool(_DEBUGGER_LINE.match(line.strip()))


def last_words(path: Path | None, limit: int = 300) -> str:
    """The last non-blank line of the log at ``path`` (shortened), or ``""``; the debugger's
    messages are skipped, a kernel whose log holds nothing else has nothing to say."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 8192))
            tail = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    line = next((ln.strip() for ln in reversed(tail.splitlines())
                 if ln.strip() and not debugger_noise(ln)), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def tidy_logs(run_folder: str | Path) -> None:
    """Remove the run's empty logs, and their folder if nothing is left in it."""
    folder = Path(run_folder) / LOG_FOLDER
    with contextlib.suppress(OSError):
        for log in folder.glob("*.log"):
            if log.stat().st_size == 0:
                log.unlink()
        folder.rmdir()  # fails, as it should, when a log is kept
