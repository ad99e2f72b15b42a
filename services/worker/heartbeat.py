"""The worker's heartbeat: its own document in `workers`, and `last_heartbeat` on its tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from shared.clock import utcnow
from shared.store import Store

log = logging.getLogger(__name__)


async def beat(
    store: Store, name: str, *, started_at: datetime, concurrency: int, tasks: list[str]
) -> None:
    """Record one heartbeat of worker `name`."""
    now = utcnow()
    await store.workers.beat(
        name,
        at=now,
        started_at=started_at,
        concurrency=concurrency,
        tasks=tasks,
        pid=os.getpid(),
        host=socket.gethostname(),
    )
    if tasks:
        await store.tasks.touch_heartbeats(tasks, name, now)


async def heartbeat_forever(
    store: Store,
    name: str,
    *,
    interval_s: float,
    concurrency: int,
    current_tasks: Callable[[], list[str]],
    answered: Callable[[bool], None] = lambda _: None,
) -> None:
    """Beat every `interval_s` seconds until cancelled; a failed beat is logged and retried.
    `answered` learns whether each beat reached the database."""
    started_at = utcnow()
    while True:
        try:
            await beat(
                store,
                name,
                started_at=started_at,
                concurrency=concurrency,
                tasks=current_tasks(),
            )
        except Exception as exc:
            answered(False)
            log.warning("heartbeat of %s failed: %r", name, exc)
        else:
            answered(True)
        await asyncio.sleep(interval_s)
