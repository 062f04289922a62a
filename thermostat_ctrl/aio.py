"""asyncio helpers shared by the driver and the bridge.

``timeout`` is :func:`asyncio.timeout` (the ``async-timeout`` package before
Python 3.11).  Use it, not :func:`asyncio.wait_for`: before Python 3.12 that
returns a result that arrives as the task is cancelled and drops the
cancellation, so a loop of exchanges cannot be stopped.
"""

import asyncio
import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:
    from async_timeout import timeout

__all__ = ["timeout", "cancel_task"]


async def cancel_task(task: asyncio.Task) -> None:
    """Cancel ``task`` and wait until it has ended (cancelled again while it
    goes on: code of other libraries may still drop a cancellation)."""
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
