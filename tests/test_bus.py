"""The sample bus: every consumer sees every device's samples in order; a
slow or stalled lossy consumer loses its oldest samples, counted, and costs
the lossless log of record nothing."""

import asyncio
import threading

import httpx
import numpy as np
import pytest

from harness import FIRST, bridge_config, polled, read_log
from thermostat_ctrl.bridge.acquisition.bus import ConsumerThread, SampleBus
from thermostat_ctrl.bridge.acquisition.sample import Sample
from thermostat_ctrl.bridge.web.app import create_app

#: Poll period of the in-process bridge below.
PERIOD = 0.1


def _sample(device: str, ts: int) -> Sample:
    return Sample(device=device, ts=ts, monotonic=0.0, report=[], columns=("t_ch0",),
                  values=np.array([float(ts)]))


def test_every_consumer_gets_every_sample_in_order():
    bus = SampleBus()
    both, only_b = bus.subscribe("both"), bus.subscribe("b", device="b")
    for ts in range(10):
        bus.publish(_sample("ab"[ts % 2], ts))
    assert [(s.device, s.ts) for s in both.get(0)] == [("ab"[t % 2], t) for t in range(10)]
    assert [s.ts for s in only_b.get(0)] == [1, 3, 5, 7, 9]
    assert both.get(0) == []  # nothing more queued: empty after the timeout
    stats = bus.stats()
    assert (stats["both"].delivered, stats["b"].delivered, stats["both"].dropped) == (10, 5, 0)


def test_a_lossy_consumer_that_falls_behind_loses_its_oldest_samples_counted():
    bus = SampleBus()
    slow = bus.subscribe("slow", maxlen=3)
    for ts in range(10):
        bus.publish(_sample("a", ts))
    assert [s.ts for s in slow.get(0)] == [7, 8, 9]
    assert (bus.stats()["slow"].dropped, bus.stats()["slow"].queued) == (7, 0)
    with pytest.raises(ValueError, match="maxlen"):
        bus.subscribe("bad", maxlen=0)


def test_a_lossless_consumer_makes_the_publisher_wait_for_room():
    bus = SampleBus()
    log = bus.subscribe("log", lossless=True)
    log.maxlen = 2  # as if the disk had stalled for LOSSLESS_MAXLEN samples
    bus.publish(_sample("a", 0))
    bus.publish(_sample("a", 1))
    published = threading.Event()

    def third():
        bus.publish(_sample("a", 2))
        published.set()

    threading.Thread(target=third, daemon=True).start()
    assert not published.wait(0.2)  # held back: the queue is full
    assert [s.ts for s in log.get(0)] == [0, 1]
    assert published.wait(10)
    assert [s.ts for s in log.get(0)] == [2] and bus.stats()["log"].dropped == 0


def test_closing_hands_over_what_is_queued_then_none():
    bus = SampleBus()
    subscription = bus.subscribe("c")
    handled = []
    consumer = ConsumerThread(subscription, handled.extend).start()
    for ts in range(5):
        bus.publish(_sample("a", ts))
    consumer.stop(timeout=10)
    assert [s.ts for s in handled] == list(range(5))
    bus.publish(_sample("a", 5))  # closed: no longer queued
    assert subscription.get(0) is None and bus.stats()["c"].subscribers == 0


async def test_an_asyncio_consumer_is_woken_from_another_thread():
    bus = SampleBus()
    subscription = bus.subscribe("stream")
    waiting = asyncio.ensure_future(subscription.next())
    await asyncio.sleep(0)  # let next() register its waker
    threading.Thread(target=bus.publish, args=(_sample("a", 1),)).start()
    batch = await asyncio.wait_for(waiting, 10)
    assert [s.ts for s in batch] == [1]
    subscription.close()
    assert await subscription.next() is None


async def test_slow_and_stalled_consumers_cost_the_store_nothing(tmp_path):
    release = threading.Event()
    seen = []

    def slow(batch):
        seen.extend(s.ts for s in batch if s.device == FIRST)
        release.wait(0.05)  # a consumer that takes its time over every batch

    app = create_app(bridge_config(tmp_path, simulation=2, poll_period=PERIOD))
    bridge = app.state.bridge
    bridge.consume("slow", slow, maxlen=1000)
    stalled = bridge.bus.subscribe("stalled", maxlen=5)  # never read
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as client:
            await polled(bridge, 30)
            health = (await client.get("/health")).json()
            consumers = health["consumers"]
            assert consumers["stalled"]["dropped"] >= 2 * 30 - 5
            assert consumers["stalled"]["queued"] == 5
            assert consumers["store"]["dropped"] == 0
            metrics = (await client.get("/metrics")).text
            assert 'thermostat_bus_dropped_total{consumer="stalled"}' in metrics
            for device in bridge.devices.values():
                assert device.poller.skipped == 0
    stalled.close()
    for name, device in bridge.devices.items():
        assert len(read_log(tmp_path / name)) == device.poller.polls_ok
    logged = [int(row[1]) for _, _, row in read_log(tmp_path / FIRST)]
    assert seen == logged  # the slow consumer saw every sample, in order

