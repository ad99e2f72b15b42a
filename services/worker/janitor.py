"""The janitor: every worker runs it, so no task is left stuck whatever crashed.

Each sweep, all compare-and-set (so janitors of several workers never do a thing twice):
1. relays commands whose publish was never confirmed (the submitter died after storing the task);
2. marks workers missing whose heartbeat is older than the TTL, and ends or requeues the tasks
   they held, as each task type says (`requeues_when_lost`);
3. ends parents whose children all ended while no one was there to notice;
4. settles questions whose timeout passed: the default is answered, or the task fails;
5. keeps the resources' queues true: an entry of a task that ended (or was never stored) leaves,
   giving the next its turn; a task waiting for a resource whose turn came takes it.

Besides, every `schedule_poll_s`, it wakes scheduled tasks whose time came (`Runs.wake`); the
relay would too, within a sweep, if that loop stopped.

A worker is judged missing only from heartbeats that could have been written: while this
janitor's own database access fails, and for one worker TTL after it comes back, no worker is
reaped (after an outage every live worker's last heartbeat is old, through no fault of its own).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from shared import metrics
from shared.clock import utcnow
from shared.commands import Commands
from shared.lifecycle import Phase, TaskState
from shared.records import StoredTask
from shared.registry import Registry, UnknownTaskType
from shared.reservations import Mode, Reservation
from shared.runs import Runs
from shared.settings import Settings
from shared.store import DueDispatch, Store

log = logging.getLogger(__name__)


def relays(due: DueDispatch) -> bool:
    """Whether a task whose outbox mark is due still needs its command: it waits for its first
    run, or was released to run again. (Any other was delivered: the mark is stale.)"""
    return due.phase in (Phase.QUEUED, Phase.RELEASED) and due.state in (
        TaskState.WAITING,
        TaskState.RUNNING,
    )


def requeues_when_lost(task: StoredTask, registry: Registry) -> bool:
    """Whether a running task whose worker went missing runs again elsewhere: its type says so
    (`on_worker_lost="requeue"`) and it has runs left of `max_runs`."""
    try:
        task_type = registry.get(task.name)
    except UnknownTaskType:
        return False
    lost = sum(1 for a in task.attempts if a.outcome == "worker_lost")
    return task_type.on_worker_lost == "requeue" and lost + 1 < task_type.max_runs


class Janitor:
    """Periodic repairs against one store."""

    def __init__(
        self, store: Store, runs: Runs, commands: Commands, registry: Registry, settings: Settings
    ) -> None:
        self.store = store
        self.runs = runs
        self.commands = commands
        self.registry = registry
        self.settings = settings
        #: Since when this process has reached the database without a failure (monotonic
        #: seconds); None while it fails.
        self.reachable_since: float | None = time.monotonic()

    def database_answered(self, answered: bool) -> None:
        """Record whether a database command of this process (a sweep, a heartbeat) got an
        answer."""
        if not answered:
            self.reachable_since = None
        elif self.reachable_since is None:
            self.reachable_since = time.monotonic()

    def may_judge_liveness(self) -> bool:
        """Whether the database has answered this process for a whole worker TTL: only then
        does an old heartbeat mean a silent worker."""
        since = self.reachable_since
        return since is not None and time.monotonic() - since >= self.settings.worker_ttl_s

    async def run_forever(self) -> None:
        """Sweep every `janitor_interval_s` until cancelled; a failed sweep is retried."""
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                self.database_answered(False)
                log.warning("janitor sweep failed: %r", exc)
            else:
                self.database_answered(True)
            await asyncio.sleep(self.settings.janitor_interval_s)

    async def sweep(self) -> None:
        """One round of every repair."""
        await self.relay()
        await self.reap_missing_workers()
        await self.finish_orphaned_parents()
        await self.settle_unanswered()
        await self.settle_reservations()

    async def wake_forever(self) -> None:
        """Queue scheduled tasks when their time comes, every `schedule_poll_s`, until
        cancelled (several workers doing so is harmless: waking is a compare-and-set)."""
        while True:
            try:
                for task_id in await self.store.tasks.due_scheduled(utcnow()):
                    await self.runs.wake(task_id)
            except Exception as exc:
                log.warning("waking scheduled tasks failed: %r", exc)
            await asyncio.sleep(self.settings.schedule_poll_s)

    async def settle_reservations(self) -> None:
        """Take out of the resources' queues the entries of tasks that ended or were never
        stored (their writer crashed between the two writes), and let blocked tasks whose turn
        came without anyone telling them take it.

        Only what has not changed for a worker TTL: these are the traces of a crash, and a
        busy queue (where every entry waits a while) must not cost a read of each of its tasks
        at every sweep."""
        cutoff = utcnow() - timedelta(seconds=self.settings.worker_ttl_s)
        queues = self.store.tasks.reservations
        stale: dict[str, list[str]] = {}
        async for resource, entry in queues.entries_older_than(cutoff):
            stale.setdefault(entry.task, []).append(resource)
        found = {t.id: t async for t in self.store.tasks.of_ids(stale, owner=None)}
        for task_id, resources in stale.items():
            task = found.get(task_id)
            if task is None or task.final:
                log.info("task %s left resources %s behind; releasing them", task_id, resources)
                await self.runs.release_resources(
                    task_id, [Reservation(resource=r, mode=Mode.SHARED) for r in resources]
                )
        for task in await self.store.tasks.blocked(cutoff):
            await self.runs.take_turn(task)

    async def relay(self) -> None:
        """Publish commands whose task was stored but whose publish was never confirmed."""
        for due in await self.store.tasks.due_dispatches(utcnow()):
            if due.phase is Phase.SCHEDULED:
                await self.runs.wake(due.id)
            elif relays(due):
                log.info("relaying the command of task %s", due.id)
                await self.commands.run(due.id, due.name, priority=due.priority)
            else:
                self.store.tasks.dispatched(due.id)

    async def reap_missing_workers(self) -> None:
        """Mark silent workers missing; requeue or fail what they were running."""
        if not self.may_judge_liveness():
            return
        cutoff = utcnow() - timedelta(seconds=self.settings.worker_ttl_s)
        metrics.WORKERS_MISSING.inc(await self.store.workers.mark_missing(cutoff))
        for task in await self.store.tasks.held_by_silent_workers(cutoff):
            await self.runs.lose(task, requeue=requeues_when_lost(task, self.registry))

    async def finish_orphaned_parents(self) -> None:
        """End parents whose last child ended while the worker that ended it crashed."""
        quiet_since = utcnow() - timedelta(seconds=self.settings.janitor_interval_s)
        for parent in await self.store.tasks.awaiting_children(quiet_since):
            await self.runs.finish_parent(parent.id)

    async def settle_unanswered(self) -> None:
        """Answer the default of each question past its timeout, or fail its task (no answer);
        end a task being canceled while it waited."""
        for task in await self.store.tasks.unanswered(utcnow()):
            outcome = await self.runs.expire_question(task)
            if outcome is not None:
                log.info("question of task %s timed out: the task is %s", task.id, outcome.value)
