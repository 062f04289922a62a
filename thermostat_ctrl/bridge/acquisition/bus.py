"""The sample bus: every sample, from its device's poller to every consumer.

A consumer :meth:`~SampleBus.subscribe`\\ s and reads its own queue, on its own
thread (:meth:`Subscription.get`, or :class:`ConsumerThread`) or in an
asyncio task on any event loop (:meth:`Subscription.next`).  Publishing only
appends to the queues, so no consumer's slowness delays a poll or another
consumer.  Each queue is bounded:

* a *lossy* consumer (a live stream, a push sink with a spool of its own)
  that falls behind loses its oldest queued samples; the loss is counted per
  consumer name (:meth:`SampleBus.stats`);
* a *lossless* consumer (the store, the log of record) never loses one.  Its
  bound is large (:data:`LOSSLESS_MAXLEN`); should it ever be reached (the
  disk stalled for that many samples), publishing waits for room rather than
  drop a row of the log.

Every consumer sees the samples of a device in the order they were polled.
"""

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Callable, Optional

from .sample import Sample

__all__ = ["SampleBus", "Subscription", "ConsumerThread", "ConsumerStats", "LOSSLESS_MAXLEN"]

#: Queue bound of a lossless consumer: about 3 hours of one device at 10 Hz.
LOSSLESS_MAXLEN = 100_000


@dataclass
class ConsumerStats:
    """Counters of every subscription of one consumer name."""

    subscribers: int = 0   #: subscriptions open now
    delivered: int = 0     #: samples handed to the consumer
    dropped: int = 0       #: samples lost because the consumer fell behind
    queued: int = 0        #: samples waiting now


class Subscription:
    """One consumer's bounded queue.  Create with :meth:`SampleBus.subscribe`."""

    def __init__(self, bus: "SampleBus", name: str, maxlen: int, lossless: bool,
                 device: Optional[str]):
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1, not {!r}".format(maxlen))
        self.name = name
        self.maxlen = maxlen
        self.lossless = lossless
        self.device = device
        self._bus = bus
        self._stats = bus._stats_of(name)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._waker: Optional[tuple] = None  # (loop, asyncio.Event) of a waiting next()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _offer(self, sample: Sample) -> None:
        """Queue ``sample`` (the publisher's side)."""
        if self.device is not None and sample.device != self.device:
            return
        with self._cond:
            if self._closed:
                return
            if len(self._queue) >= self.maxlen:
                if self.lossless:
                    while len(self._queue) >= self.maxlen and not self._closed:
                        self._cond.wait()
                    if self._closed:
                        return
                else:
                    self._queue.popleft()
                    self._stats.dropped += 1
                    self._stats.queued -= 1
            self._queue.append(sample)
            self._stats.queued += 1
            self._cond.notify_all()
            waker, self._waker = self._waker, None
        if waker is not None:
            _wake(*waker)

    def _take(self) -> list:
        """Everything queued (the caller holds the condition)."""
        batch = list(self._queue)
        self._queue.clear()
        self._stats.queued -= len(batch)
        self._stats.delivered += len(batch)
        self._cond.notify_all()
        return batch

    def get(self, timeout: Optional[float] = None) -> Optional[list]:
        """Block until samples are queued and return them all, oldest first;
        ``[]`` after ``timeout`` seconds, None once closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed, timeout)
            if self._queue:
                return self._take()
            return None if self._closed else []

    async def next(self) -> Optional[list]:
        """Await queued samples (from any event loop) and return them all;
        None once closed and drained."""
        while True:
            with self._cond:
                if self._queue:
                    return self._take()
                if self._closed:
                    return None
                event = asyncio.Event()
                self._waker = (asyncio.get_running_loop(), event)
            await event.wait()

    def close(self) -> None:
        """Stop receiving samples; those queued can still be read."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
            waker, self._waker = self._waker, None
        self._bus._unsubscribe(self)
        if waker is not None:
            _wake(*waker)


def _wake(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:
        pass  # that loop has closed: nobody is waiting any more


class SampleBus:
    """Delivers each published sample to every subscription; thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._subscriptions: tuple = ()
        self._stats: dict[str, ConsumerStats] = {}

    def _stats_of(self, name: str) -> ConsumerStats:
        with self._lock:
            return self._stats.setdefault(name, ConsumerStats())

    def subscribe(self, name: str, maxlen: int = 10_000, lossless: bool = False,
                  device: Optional[str] = None) -> Subscription:
        """A new queue for consumer ``name`` (counted under that name),
        bounded to ``maxlen`` samples (``lossless``: see the module doc),
        receiving every device's samples or only ``device``'s."""
        subscription = Subscription(self, name, LOSSLESS_MAXLEN if lossless else maxlen,
                                    lossless, device)
        with self._lock:
            self._subscriptions += (subscription,)
            subscription._stats.subscribers += 1
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions = tuple(s for s in self._subscriptions
                                            if s is not subscription)
                subscription._stats.subscribers -= 1

    def publish(self, sample: Sample) -> None:
        """Queue ``sample`` for every subscription."""
        for subscription in self._subscriptions:
            subscription._offer(sample)

    def stats(self) -> dict[str, ConsumerStats]:
        """Counters per consumer name (copies)."""
        with self._lock:
            return {name: ConsumerStats(**vars(s)) for name, s in sorted(self._stats.items())}


class ConsumerThread:
    """Runs ``handle(batch)`` on a thread of its own for every batch of
    samples a subscription receives.

    :meth:`stop` closes the subscription and returns once the samples
    already queued have been handled.
    """

    def __init__(self, subscription: Subscription, handle: Callable[[list], None]):
        self.subscription = subscription
        self._handle = handle
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="bus-" + subscription.name)

    def start(self) -> "ConsumerThread":
        """Start the thread; returns self."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            batch = self.subscription.get()
            if batch is None:
                return
            self._handle(batch)

    def stop(self, timeout: Optional[float] = None) -> None:
        """Close the subscription, handle what is queued, join the thread."""
        self.subscription.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
