"""Waiting for the resources' queues to empty."""

from __future__ import annotations

from collections.abc import Iterable

from shared.store import Store
from tests.support import eventually


async def left_every_queue(store: Store, resources: Iterable[str]) -> None:
    """Every task has left the queues of `resources`: a task leaves them right after the write
    that ends it, so a test that saw it end may look just before."""
    names = list(resources)
    await eventually(
        lambda: store.tasks.reservations.queues(names),
        lambda queues: not any(queues.values()),
    )
