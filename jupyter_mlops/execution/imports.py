"""The heavy imports that two threads of a run would otherwise make at the same moment.

A step's thread imports papermill (and through it nbclient and jupyter_client) when the step
starts, while the kernel pool's thread imports jupyter_client to start the next step's
kernel. Python locks each module while it is imported; two threads importing modules of one
package that import each other can each hold a lock the other waits for, and Python breaks
that deadlock by handing one of them a module still half made: "cannot import name
'AsyncKernelManager' from partially initialized module 'jupyter_client.manager'". One lock
around both threads' imports makes them take turns; once imported, they cost nothing.
They stay lazy, so a run whose steps are all cached imports none of them.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["papermill_and_engine", "kernel_manager_class"]

_IMPORTING = threading.Lock()


def papermill_and_engine() -> Any:
    """papermill, with the modules its ``mlops`` engine needs already imported."""
    with _IMPORTING:
        import papermill

        from . import engine  # noqa: F401 (papermill finds it by entry point, later)

        return papermill


def kernel_manager_class() -> Any:
    """jupyter_client's ``AsyncKernelManager``, with the modules that start kernels."""
    with _IMPORTING:
        from jupyter_client import AsyncKernelManager

        from . import forked, kernellog, kernelready, zygote  # noqa: F401 (used right after)

        return AsyncKernelManager
