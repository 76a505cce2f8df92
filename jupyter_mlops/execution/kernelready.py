"""Knowing a kernel is ready without waiting for silence.

jupyter_client's ``wait_for_ready`` ends by reading IOPub until it has been quiet for 0.2 s,
which every step of a run pays once more. :func:`wait_ready` asks for ``kernel_info`` and
waits for its reply and for the kernel's ``idle`` status for that request on IOPub: once
that arrived the IOPub subscription works and everything the kernel published before it has
been read, so nothing is left to flush.
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

_ROUND = 1.0  # seconds a round (kernel_info, reply, idle) may take before it is asked again
# Once the reply came, its idle status follows on IOPub within milliseconds, unless the
# subscription was not yet made when the kernel published it (ZeroMQ's "slow joiner"): a
# kernel forked ready answers that soon. Then only asking again helps, so the wait for the
# idle status starts short and doubles up to a round.
_FIRST_IDLE_WAIT = 0.05


async def _reply(channel: Any, msg_id: str, until: float, idle: bool = False) -> Any:
    """The message on ``channel`` answering ``msg_id`` (with ``idle``: the ``idle`` status it
    ends with), or None at ``until``."""
    while (left := until - time.monotonic()) > 0:
        try:
            msg = await channel.get_msg(timeout=left)
        except Empty:
            return None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue  # IOPub's welcome, or what came before our request
        if not idle or (msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"):
            return msg
    return None


async def wait_ready(client: Any, timeout: float) -> None:
    """Return once ``client``'s kernel answered ``kernel_info`` on shell and IOPub; raise
    RuntimeError as ``wait_for_ready`` does when it dies or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    idle_wait = _FIRST_IDLE_WAIT
    while True:
        msg_id = client.kernel_info()
        until = min(deadline, time.monotonic() + _ROUND)
        reply = await _reply(client.shell_channel, msg_id, until)
        # a reply without its idle status: IOPub was not yet subscribed (ask again)
        if reply is not None and await _reply(client.iopub_channel, msg_id,
                                              min(until, time.monotonic() + idle_wait),
                                              idle=True):
            client._handle_kernel_info_reply(reply)
            return
        idle_wait = min(2 * idle_wait, _ROUND)
        if not await client._async_is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
