"""Readiness without 0.2 s of quiet: a real kernel, a real client."""

from __future__ import annotations

import asyncio
import time

import pytest
from jupyter_client import AsyncKernelManager

from jupyter_mlops.execution.kernelready import wait_ready


async def _check() -> None:
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    client = manager.client()
    client.start_channels()
    try:
        await wait_ready(client, 60)
        # ready means ready: the next request's output arrives, nothing stale comes first
        msg_id = client.execute("print('hello')")
        first = await client.get_iopub_msg(timeout=10)
        assert first["parent_header"]["msg_id"] == msg_id
        started = time.monotonic()
        await wait_ready(client, 60)  # a kernel already up: one round trip, no quiet wait
        assert time.monotonic() - started < 0.2
        await manager.shutdown_kernel(now=True)
        with pytest.raises(RuntimeError, match=r"died|respond"):
            await wait_ready(client, 5)
    finally:
        client.stop_channels()
        if await manager.is_alive():
            await manager.shutdown_kernel(now=True)


@pytest.mark.kernel
def test_a_kernel_is_ready_once_it_answered_on_shell_and_iopub() -> None:
    asyncio.run(_check())
