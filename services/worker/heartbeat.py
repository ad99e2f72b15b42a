"""The worker's heartbeat: its own document in `workers`, whose `lease_until` is its lease on
every task it holds (one write per renewal, however many tasks)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from services.worker.lease import LeaseClock
from shared.clock import utcnow
from shared.store import Store

log = logging.getLogger(__name__)


async def beat(
    store: Store,
    name: str,
    *,
    lease_s: float,
    started_at: datetime,
    concurrency: int,
    tasks: list[str],
) -> None:
    """Record one heartbeat of worker `name`, renewing its lease for `lease_s` from now."""
    now = utcnow()
    await store.workers.beat(
        name,
        at=now,
        lease_until=now + timedelta(seconds=lease_s),
        started_at=started_at,
        concurrency=concurrency,
        tasks=tasks,
        pid=os.getpid(),
        host=socket.gethostname(),
    )


async def heartbeat_forever(
    store: Store,
    name: str,
    *,
    lease: LeaseClock,
    concurrency: int,
    current_tasks: Callable[[], list[str]],
    answered: Callable[[bool], None] = lambda _: None,
) -> None:
    """Renew the lease every `lease.renew_s` seconds until cancelled; a failed renewal is
    logged and retried. `lease` learns when each answered renewal was sent, `answered`
    whether each reached the database. A renewal unanswered within the lease is given up (a
    cut-off link may never answer), so that the next is sent."""
    started_at = utcnow()
    while True:
        sent_at = time.monotonic()
        try:
            await asyncio.wait_for(
                beat(
                    store,
                    name,
                    lease_s=lease.lease_s,
                    started_at=started_at,
                    concurrency=concurrency,
                    tasks=current_tasks(),
                ),
                timeout=lease.lease_s,
            )
        except Exception as exc:
            answered(False)
            log.warning("heartbeat of %s failed: %r", name, exc)
        else:
            lease.renewed(sent_at)
            answered(True)
        await asyncio.sleep(max(0.0, lease.renew_s - (time.monotonic() - sent_at)))
