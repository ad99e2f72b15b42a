"""Commands on a real broker for tests that drive the verbs or submissions in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from shared.broker import declare_topology, make_broker
from shared.commands import Commands
from shared.settings import Settings
from shared.store import Store
from shared.topology import Topology


@contextlib.asynccontextmanager
async def commands_on(settings: Settings, store: Store) -> AsyncIterator[Commands]:
    """`Commands` publishing to the test's namespace on a connected broker, its topology
    declared; the broker is stopped after the block."""
    broker = make_broker(settings, logger=None)
    await broker.connect()
    topology = Topology(settings.namespace)
    await declare_topology(broker, topology, settings)
    try:
        yield Commands(broker, store.tasks, topology, timeout_s=5)
    finally:
        await broker.stop()
