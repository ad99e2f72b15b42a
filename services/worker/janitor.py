"""The janitor: every worker runs it, so no task is left stuck whatever crashed.

Each sweep, all compare-and-set (so janitors of several workers never do a thing twice):
1. relays commands whose publish was never confirmed (the submitter died after storing the task);
2. marks workers missing whose heartbeat is older than the TTL, and ends or requeues the tasks
   they held, as each task type says;
3. ends parents whose children all ended while no one was there to notice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from shared import metrics
from shared.lifecycle import TaskState, utcnow
from shared.registry import UnknownTaskType
from shared.service import TaskService
from shared.store import Doc

log = logging.getLogger(__name__)


class Janitor:
    """Periodic repairs against one store."""

    def __init__(self, service: TaskService) -> None:
        self.service = service
        self.store = service.store
        self.settings = service.settings

    async def run_forever(self) -> None:
        """Sweep every `janitor_interval_s` until cancelled; a failed sweep is retried."""
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("janitor sweep failed: %r", exc)
            await asyncio.sleep(self.settings.janitor_interval_s)

    async def sweep(self) -> None:
        """One round of every repair."""
        await self.relay()
        await self.reap_missing_workers()
        await self.finish_orphaned_parents()

    async def relay(self) -> None:
        """Publish commands whose task was stored but whose publish was never confirmed."""
        for task in await self.store.due_dispatches(utcnow()):
            released = (task.get("run") or {}).get("id") is None
            runnable = task["state"] == TaskState.WAITING or (
                task["state"] == TaskState.RUNNING and released
            )
            if runnable:
                log.info("relaying the command of task %s", task["_id"])
                await self.service.dispatch(task["_id"], task["name"])
            else:
                self.store.dispatched(task["_id"])

    async def reap_missing_workers(self) -> None:
        """Mark silent workers missing; requeue or fail what they were running."""
        cutoff = utcnow() - timedelta(seconds=self.settings.worker_ttl_s)
        marked = await self.store.workers.update_many(
            {"last_heartbeat": {"$lt": cutoff}, "missing": False}, {"$set": {"missing": True}}
        )
        metrics.WORKERS_MISSING.inc(marked.modified_count)
        for task in await self.store.stale_running(cutoff):
            await self._end_lost(task)

    async def _end_lost(self, task: Doc) -> None:
        run = task.get("run") or {}
        worker = {**(task.get("worker") or {}), "missing": True}
        reason = f"worker {worker.get('name')} went missing"
        guard = {"run.id": run.get("id")}
        if task["state"] == TaskState.CANCELING:
            ended = await self.store.transition(
                task["_id"],
                [TaskState.CANCELING],
                TaskState.CANCELED,
                fields={"worker": worker, "error": {"type": "canceled", "message": reason}},
                guard=guard,
                reason=reason,
            )
        else:
            if self._requeues(task):
                attempt = {
                    "worker": worker.get("name"),
                    "outcome": "worker_lost",
                    "error": {"type": "worker_lost", "message": reason},
                    "ended_at": utcnow(),
                    "retry_in_s": 0,
                }
                if await self.service.requeue(task, run["id"], attempt) is not None:
                    metrics.worker_lost(task["name"], "requeued")
                    log.warning("task %s requeued: %s", task["_id"], reason)
                return
            ended = await self.store.transition(
                task["_id"],
                [TaskState.RUNNING],
                TaskState.FAILED,
                fields={"worker": worker, "error": {"type": "worker_lost", "message": reason}},
                guard=guard,
                reason=reason,
            )
        if ended is not None:
            metrics.worker_lost(task["name"], ended["state"])
            log.warning("task %s ended %s: %s", task["_id"], ended["state"], reason)
            await self.service.ended(ended)

    def _requeues(self, task: Doc) -> bool:
        try:
            task_type = self.service.registry.get(task["name"])
        except UnknownTaskType:
            return False
        lost = sum(1 for a in task.get("attempts") or [] if a.get("outcome") == "worker_lost")
        return task_type.on_worker_lost == "requeue" and lost + 1 < task_type.max_runs

    async def finish_orphaned_parents(self) -> None:
        """End parents whose last child ended while the worker that ended it crashed."""
        quiet_since = utcnow() - timedelta(seconds=self.settings.janitor_interval_s)
        for parent in await self.store.waiting_parents(quiet_since):
            await self.service.finish_parent(parent["_id"])
