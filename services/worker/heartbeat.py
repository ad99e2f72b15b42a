"""The worker's heartbeat: its own document in `workers`, and `last_heartbeat` on its tasks."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

from shared.lifecycle import TaskState, utcnow
from shared.store import TaskStore

log = logging.getLogger(__name__)


async def beat(
    store: TaskStore, name: str, *, started_at: datetime, concurrency: int, tasks: list[str]
) -> None:
    """Record one heartbeat of worker `name`."""
    now = utcnow()
    await store.workers.update_one(
        {"_id": name},
        {
            "$set": {
                "last_heartbeat": now,
                "missing": False,
                "started_at": started_at,
                "concurrency": concurrency,
                "tasks": tasks,
                # For operators (administrators see them in /api/v1/workers), not for users.
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
        },
        upsert=True,
    )
    if tasks:
        await store.tasks.update_many(
            {
                # Only the tasks this process runs now: a task whose claim was stored but never
                # answered (the database went away mid-claim) must go stale, so the janitor
                # requeues it, rather than be kept alive by its worker's other tasks.
                "_id": {"$in": tasks},
                "run.worker": name,
                "state": {"$in": [TaskState.RUNNING.value, TaskState.CANCELING.value]},
            },
            {"$set": {"worker.last_heartbeat": now, "updated_at": now}, "$inc": {"version": 1}},
        )


async def heartbeat_forever(
    store: TaskStore,
    name: str,
    *,
    interval_s: float,
    concurrency: int,
    current_tasks: Callable[[], list[str]],
) -> None:
    """Beat every `interval_s` seconds until cancelled; a failed beat is logged and retried."""
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
            log.warning("heartbeat of %s failed: %r", name, exc)
        await asyncio.sleep(interval_s)
