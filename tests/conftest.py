"""Fixtures shared by the test modules (helpers live in :mod:`harness`)."""

import pytest

from harness import polled, running_bridge


@pytest.fixture
async def bridge_client(tmp_path):
    """(bridge, client) of an in-process bridge on one simulated device, polled 5 times."""
    async with running_bridge(tmp_path) as (bridge, client):
        await polled(bridge, 5)
        yield bridge, client


@pytest.fixture
async def lab_client(tmp_path):
    """(bridge, client) of an in-process bridge on three simulated devices, each polled 5 times."""
    async with running_bridge(tmp_path, simulation=3) as (bridge, client):
        await polled(bridge, 5)
        yield bridge, client
