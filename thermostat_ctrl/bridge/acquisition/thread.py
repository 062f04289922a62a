"""The acquisition thread: one event loop, apart from the HTTP server's, that
runs every device's poll loop.

The pollers only wait on their devices and publish samples (the store and the
other consumers run elsewhere), so one loop serves many devices: a device that
hangs leaves its poller awaiting its timeout while the others keep their
schedules, and a busy HTTP server never delays a poll.
"""

import asyncio
import logging
import threading
from typing import Callable, Optional

from ...aio import cancel_task
from ...driver import Thermostat
from .poller import Poller

logger = logging.getLogger(__name__)

__all__ = ["AcquisitionThread"]


class AcquisitionThread:
    """Runs pollers on a thread and event loop of their own.

    :param on_ended: called (in the loop that called :meth:`start`) with a
        poller whose loop ended other than by :meth:`stop` (a bug).
    """

    def __init__(self, on_ended: Optional[Callable[[Poller], None]] = None):
        self._on_ended = on_ended
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._tasks: list[asyncio.Task] = []

    def start(self, jobs: list[tuple[Poller, Thermostat]]) -> None:
        """Start polling: ``poller.run(driver)`` for each job."""
        owner = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="acquisition",
                                        daemon=True)
        self._thread.start()

        async def spawn() -> None:
            for poller, driver in jobs:
                task = asyncio.get_running_loop().create_task(poller.run(driver),
                                                              name="poll " + poller.name)
                task.add_done_callback(lambda t, p=poller: self._ended(owner, p, t))
                self._tasks.append(task)

        asyncio.run_coroutine_threadsafe(spawn(), self._loop).result()

    def _ended(self, owner: asyncio.AbstractEventLoop, poller: Poller, task: asyncio.Task) -> None:
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.error("%s: poll loop failed", poller.name, exc_info=task.exception())
        if self._on_ended is not None and not owner.is_closed():
            owner.call_soon_threadsafe(self._on_ended, poller)

    async def stop(self) -> None:
        """Stop every poll loop (closing the device connections) and the thread."""
        if self._loop is None:
            return

        async def shutdown() -> None:
            for task in self._tasks:
                await cancel_task(task)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(shutdown(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop.close()
        self._loop = None
