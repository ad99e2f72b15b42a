"""The janitor: every worker runs it, so no task is left stuck whatever crashed.

Each sweep, all compare-and-set (so janitors of several workers never do a thing twice):
1. relays commands whose publish was never confirmed (the submitter died after storing the task);
2. marks workers missing whose lease is past (their heartbeat, which renews it, stopped), and
   ends or requeues the tasks they held, as each task type says (`requeues_when_lost`);
3. ends parents whose children all ended while no one was there to notice;
4. settles questions whose timeout passed: the default is answered, or the task fails;
5. keeps the resources' queues true: an entry of a task that ended (or was never stored) leaves,
   giving the next its turn; a task waiting for a resource whose turn came takes it.

Besides, every `schedule_poll_s`, it wakes scheduled tasks whose time came (`Runs.wake`); the
relay would too, within a sweep, if that loop stopped.

A worker is judged missing only from renewals that could have been written: while this
janitor's own database access fails, and for one lease after it comes back, no worker is reaped
(after an outage every live worker's lease is past, through no fault of its own). A worker that
could not renew has stopped its tasks by then (`lease.py`): taking them cannot run one twice.

A task this janitor released runs on its own worker when that has a slot free: its requeued
command may be pushed to the lost worker itself, if it is cut off rather than dead, and wait
there until the broker gives that connection up (its AMQP heartbeat).

The same judgement lets a worker take over at once a task whose command was delivered to it
again while the worker holding it has no lease (`take_over`): the broker saw that worker's
connection drop, so its command came back before the next sweep.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from shared import metrics
from shared.clock import utcnow
from shared.commands import Commands
from shared.lifecycle import Phase, TaskState
from shared.records import StoredTask
from shared.registry import Registry, UnknownTaskType
from shared.reservations import Mode, Reservation
from shared.runs import Claim, Runs
from shared.settings import Settings
from shared.store import DueDispatch, Store, unreachable
from shared.task import Attempt

log = logging.getLogger(__name__)

#: Seconds after a lease's end at which the janitor looks at it (clocks of the worker that set
#: it and of this one may differ by a little).
EXPIRY_MARGIN_S = 0.05


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
        #: The earliest end of a lease the last sweep saw hold, to look again just after it.
        self.next_expiry: datetime | None = None
        #: Runs a task released from a lost worker on this worker, given its id and type, if it
        #: has a free slot (`Runner.adopt`); whether it did. None: the queue decides.
        self.adopt: Callable[[str, str], bool] | None = None
        #: Whether this worker's runner has the task of the given id in hand (a `handle` call
        #: from before its claim to its stored outcome; `Runner.has_in_hand`). None: unknown.
        self.in_hand: Callable[[str], bool] | None = None

    def database_answered(self, answered: bool) -> None:
        """Record whether a database command of this process (a sweep, a heartbeat) got an
        answer."""
        if not answered:
            self.reachable_since = None
        elif self.reachable_since is None:
            self.reachable_since = time.monotonic()

    def may_judge_liveness(self) -> bool:
        """Whether the database has answered this process for a whole lease: only then does a
        lease that is past mean a silent worker."""
        since = self.reachable_since
        return since is not None and time.monotonic() - since >= self.settings.lease_s

    async def run_forever(self) -> None:
        """Sweep every `janitor_interval_s` until cancelled, and just after the earliest lease
        it saw ends if that is sooner (a renewed lease then simply is not taken); a failed
        sweep is retried."""
        while True:
            self.database_answered(await self.sweep())
            await asyncio.sleep(self.pause_s(utcnow()))

    def pause_s(self, now: datetime) -> float:
        """Seconds until the next sweep: the interval, or until just after the earliest lease
        the last sweep saw end, whichever is sooner."""
        pause_s = self.settings.janitor_interval_s
        if self.next_expiry is not None:
            until_expiry_s = (self.next_expiry - now).total_seconds() + EXPIRY_MARGIN_S
            pause_s = min(pause_s, max(until_expiry_s, EXPIRY_MARGIN_S))
        return pause_s

    async def sweep(self) -> bool:
        """One round of every repair; whether the database answered it throughout.

        Each repair goes on when another fails: one that keeps failing on one thing (a command
        the broker will not take, a document it cannot read) must not hold up the others,
        least of all the lost workers' tasks. Only a failure to reach the database stops this
        janitor judging leases; any other is logged, and the next sweep tries again."""
        answered = True
        # A lost worker's tasks first: they are the repair someone is waiting for.
        for repair in (
            self.reap_missing_workers,
            self.reclaim_forgotten,
            self.relay,
            self.finish_orphaned_parents,
            self.settle_unanswered,
            self.settle_reservations,
        ):
            try:
                await repair()
            except Exception as exc:
                log.warning("janitor's %s failed: %r", repair.__name__, exc)
                # A refused command, or the broker's failure, says nothing of whether the
                # workers' renewals could be written.
                if unreachable(exc):
                    answered = False
        return answered

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

        Only what has not changed for a lease: these are the traces of a crash, and a
        busy queue (where every entry waits a while) must not cost a read of each of its tasks
        at every sweep."""
        cutoff = utcnow() - timedelta(seconds=self.settings.lease_s)
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
                if due.holds and due.phase is Phase.QUEUED and not await self._holds_still(due):
                    continue
                log.info("relaying the command of task %s", due.id)
                await self.commands.run(due.id, due.name, priority=due.priority)
            else:
                self.store.tasks.dispatched(due.id)

    async def _holds_still(self, due: DueDispatch) -> bool:
        """A task stored holding its resources by key whose submitter died before it looked at
        their queues looks now, before its command goes: whether it still holds them (else it
        queued behind the tasks there, or is gone)."""
        task = await self.store.tasks.get(due.id)
        if task is None or task.phase is not Phase.QUEUED:
            return False
        return await self.runs.hold_by_key(task) is None

    async def reap_missing_workers(self) -> None:
        """Mark workers whose lease is past missing; requeue or fail what they were running."""
        if not self.may_judge_liveness():
            return
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.lease_s)
        live = await self.store.workers.live(now)
        self.next_expiry = min(live.values(), default=None)
        # Only claims made before `now` (with a renewal's margin for the clocks): a worker
        # claims only while it holds a lease, so one that claimed before `now` and is not among
        # those live at `now` has let its lease pass. A younger claim may be of a worker whose
        # first heartbeat came after `live` was read. (Waiting a whole lease from the claim, as
        # before, put off the last task of a killed worker by up to a lease.)
        claimed_before = now - timedelta(seconds=self.settings.lease_renew_s)
        stranded = await self.store.tasks.held_without_lease(live, claimed_before)
        # All at once, and beside marking the workers missing (which decides nothing): the
        # tasks' compare-and-sets share a statement (group commit) and their commands are
        # published side by side, so the last is requeued about when the first is.
        marking = asyncio.ensure_future(self.store.workers.mark_missing(now, cutoff))
        try:
            await _each(self._lose(task) for task in stranded)
        finally:
            metrics.WORKERS_MISSING.inc(await marking)

    async def _lose(self, task: StoredTask) -> None:
        lost = await self.runs.lose(task, requeue=requeues_when_lost(task, self.registry))
        if lost is TaskState.RUNNING and self.adopt is not None:
            self.adopt(task.id, task.name)

    async def reclaim_forgotten(self) -> None:
        """Release the runs held under this worker's name that its runner no longer has in
        hand: a `handle` that ended without storing an outcome (cancelled under it, say, when
        its broker connection went). The lease is the worker's, not the task's, so nobody else
        would ever take such a task while this worker lives.

        Safe against a claim in flight: a `handle` counts as in hand from before its claim, so a
        task read as held by this worker and then not in hand had its `handle` end in between;
        if that stored an outcome, the release's compare-and-set on the run matches nothing."""
        in_hand = self.in_hand
        if in_hand is None:
            return
        held = await self.store.tasks.held_by(self.settings.worker_name)
        forgotten = [task for task in held if not in_hand(task.id)]
        for task in forgotten:
            log.warning("task %s is held by this worker's run, which no longer runs it", task.id)
        await _each(self._lose(task) for task in forgotten)

    async def reclaim_own(self) -> int:
        """Before this worker claims anything: end as lost the runs still held under its name,
        those of an earlier process of the same name (a fixed `TASKLIGHT_WORKER_NAME`, restarted
        after a crash), which its lease, renewed by this process, would otherwise keep. How many
        there were."""
        held = await self.store.tasks.held_by(self.settings.worker_name)
        for task in held:
            await self.runs.lose(task, requeue=requeues_when_lost(task, self.registry))
        return len(held)

    async def give_up(self, task_id: str, run_id: str) -> None:
        """This worker stopped run `run_id` of `task_id` when its lease was lost, and has it
        again: hand the task back to the queue (as a stopping worker does: its handler was
        stopped at an `await`, as on a shutdown), or end it canceled if a cancel came meanwhile,
        unless another run has taken it."""
        task = await self.store.tasks.get(task_id)
        if task is None or task.phase is not Phase.HELD or task.run_id != run_id:
            return
        worker = self.settings.worker_name
        attempt = Attempt(outcome="lease_lost", worker=worker, ended_at=utcnow())
        await self.runs.release(Claim(task, run_id, worker), attempt)

    async def take_over(self, task_id: str, *, ours_unrun: bool) -> bool:
        """A command for `task_id` reached this worker, which could not claim it: if the run
        that holds it is of a worker with no lease (or of this worker, when `ours_unrun` says
        it neither runs nor handles the task: a claim whose answer was lost), end that run as
        lost now rather than at the next sweep. Whether the task was released, so that this
        worker may claim it."""
        task = await self.store.tasks.get(task_id)
        if task is None or task.final or task.phase is not Phase.HELD or task.run is None:
            return False
        holder = task.run.worker
        if holder is None:
            return False
        if holder == self.settings.worker_name:
            if not ours_unrun:  # what this process knows of itself needs no judgement
                return False
        elif not (
            self.may_judge_liveness() and await self.store.workers.lease_expired(holder, utcnow())
        ):
            return False
        log.info("taking over task %s from worker %s, which holds no lease", task_id, holder)
        lost = await self.runs.lose(task, requeue=requeues_when_lost(task, self.registry))
        return lost is TaskState.RUNNING

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


async def _each(calls: Iterable[Awaitable[None]]) -> None:
    """Await all of `calls` together, each to its end whatever the others do; then raise the
    first error, if any (so that the repair is counted as failed)."""
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
