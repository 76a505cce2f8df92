"""``run --executor dask --scheduler ADDRESS``: each step's notebook runs on a Dask worker.

The runner keeps scheduling, caching and recording in this process; only the papermill call
moves to the cluster, so results and run records are the same as with the local executor.
Workers must see the pipeline and run folders at the same paths (one machine, or a shared
file system).
"""

from __future__ import annotations

from typing import Any

from .errors import MlopsError
from .stepexec import execute_step

EXTRA_HINT = "pip install 'jupyter-mlops[dask]'"


class DaskExecutor:
    """A connection to a Dask scheduler that runs step notebooks on its workers."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise MlopsError(f"--executor dask needs Dask distributed; {EXTRA_HINT}") from None
        try:
            self.client = Client(address, timeout=10)
        except (OSError, TimeoutError, ValueError) as err:  # ValueError: a malformed address
            raise MlopsError(f"cannot reach the Dask scheduler at {address} ({err}); check "
                             "the address (e.g. tcp://127.0.0.1:8786)") from None

    def run(self, **kwargs: Any) -> None:
        """Run :func:`execute_step` on a worker and wait; its exception comes back as is."""
        # pure=False: the same step with the same arguments may run again (a re-run)
        self.client.submit(execute_step, pure=False, **kwargs).result()

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self.client.close()
