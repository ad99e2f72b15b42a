"""Running one `RunTask` command: claim the task, run its handler, conclude with one verb.

    claim (runs.claim) ─▶ handler ─▶ decisions.after_* ─▶ one verb of shared/runs.py
    └──────── a slot ────────┘       (a pure Decision)

A handler that asks a question with no answer yet (`ctx.ask` raises `AnswerNeeded`) ends its run
with `Runs.await_answer`: the task waits for its owner, holding no worker slot.

The runner owns what happens around the handler (its cancel grace, the hand-back on shutdown,
the early ack of a long task, insisting on the outcome through a database outage); what becomes
of the task is `decisions.py`'s to decide and `runs.py`'s to write.

A worker that lost its lease (no renewal answered for nearly `lease_s`, see `lease.py`) stops
its handlers and writes nothing about them (`fence`): the janitor of another worker will take
them. Until its lease is renewed again it claims nothing.

A slot (of `concurrency`) is held from the claim to the handler's return, not while the outcome
is written: commands are taken a few more than the slots at a time (the worker's prefetch), so
while some tasks' ends are in flight others are claimed and run, and the claims and ends of
tasks handled together share their statements.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.worker import decisions
from services.worker.context import RunContext
from services.worker.decisions import (
    Abandon,
    AwaitAnswer,
    AwaitChildren,
    Complete,
    Decision,
    EndCanceled,
    Fail,
    HandBack,
    RetryLater,
)
from services.worker.lease import LeaseClock
from services.worker.slots import Slots
from shared import metrics
from shared.clock import utcnow
from shared.lifecycle import Phase
from shared.messages import RunTask
from shared.questions import AnswerNeeded
from shared.registry import Registry
from shared.runs import Claim, Runs
from shared.store import DatabaseError, outcome_unknown
from shared.submission import Submissions
from shared.task import Attempt, ProgressReport

log = logging.getLogger(__name__)

#: Seconds a worker keeps trying to store an outcome while the database is unreachable.
OUTCOME_PATIENCE_S = 300.0
Ack = Callable[[], Awaitable[None]]
#: Takes over the task of a command that could not be claimed (see `Janitor.take_over`): called
#: with its id and whether this process neither runs nor handles it otherwise; whether the task
#: was released.
TakeOver = Callable[[str, bool], Awaitable[bool]]
#: Ends a run this worker stopped when its lease was lost, unless another run took its task
#: (see `Janitor.give_up`): called with the task's id and the run's, once the lease is back.
GiveUp = Callable[[str, str], Awaitable[None]]
T = TypeVar("T")
#: Seconds between looks at whether a fenced worker's lease was renewed.
LEASE_POLL_S = 0.05


class NotTaken(Exception):
    """The worker is stopping and did not claim this command: give it back to the queue."""


class Fenced(Exception):
    """The worker lost its lease while it ran this command's task, and stopped it without
    writing anything: acknowledge the command (another worker's janitor takes the task once the
    lease has expired, or this worker gives the run up once its lease is back; either queues a
    command again)."""


@dataclass
class Runner:
    """Runs commands for one worker process; knows which tasks it runs now."""

    runs: Runs
    submissions: Submissions
    registry: Registry
    worker_name: str
    #: Seconds a handler gets after a cancel before it is stopped without reaching a checkpoint.
    cancel_grace_s: float = 10.0
    #: Seconds after which the command of a still-running task is acknowledged.
    ack_deadline_s: float = 25 * 60.0
    #: Tasks claimed or run at once.
    concurrency: int = 8
    running: dict[str, RunContext] = field(default_factory=dict)
    #: Every `handle` call in progress, from claim to stored outcome.
    inflight: set[asyncio.Future[Any]] = field(default_factory=set)
    slots: Slots = field(init=False)
    #: Set once `shutdown` began: commands that get a slot after it are not claimed.
    stopping: bool = False
    #: This worker's lease; None: never fenced (a worker without a heartbeat, in tests).
    lease: LeaseClock | None = None
    #: Takes over tasks held by workers without a lease; None: never (the janitor's sweep will).
    take_over: TakeOver | None = None
    #: Gives up the runs stopped when the lease was lost; None: the janitors' sweeps will.
    give_up: GiveUp | None = None
    #: Runs stopped when the lease was lost, not yet given up: run id by task id.
    abandoned: dict[str, str] = field(default_factory=dict)
    #: `handle` calls in progress, by task id.
    handling: Counter[str] = field(default_factory=Counter)
    _adopted: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.slots = Slots(self.concurrency)

    def has_in_hand(self, task_id: str) -> bool:
        """Whether a `handle` call for `task_id` is in progress here (from before its claim to
        its stored outcome), or its run was stopped by the fence and waits to be given up."""
        return task_id in self.handling or task_id in self.abandoned

    def fenced(self) -> bool:
        """Whether this worker's lease is lost: it must run nothing now."""
        return self.lease is not None and self.lease.fenced(time.monotonic())

    def fence(self) -> int:
        """The lease is lost: stop every running handler, to write nothing about it; how many
        were stopped now."""
        stopped = 0
        for context in list(self.running.values()):
            if not context.fenced:
                context.fence()
                stopped += 1
        if stopped:
            log.warning("lease lost: stopped %d running tasks, writing nothing about them", stopped)
        return stopped

    def adopt(self, task_id: str, name: str) -> bool:
        """Run here a task just released from a lost worker, if a slot is free now (its
        requeued command may be pushed to that very worker, cut off but not yet dropped by the
        broker, and wait there until the broker gives up on it). Whether it was taken on; the
        command, wherever it lands, then finds the task held and is dropped."""
        if self.stopping or self.slots.locked() or self.fenced():
            return False
        adopted = asyncio.ensure_future(self.handle(RunTask(task_id=task_id, name=name), _no_ack))
        self._adopted.add(adopted)
        adopted.add_done_callback(self._adopted_done)
        return True

    def _adopted_done(self, adopted: asyncio.Future[None]) -> None:
        self._adopted.discard(adopted)
        if not adopted.cancelled() and adopted.exception() is not None:
            # Not stored: the task stays released, and its requeued command runs it elsewhere.
            log.warning("adopted task not run here: %r", adopted.exception())

    async def fence_forever(self, interval_s: float) -> None:
        """Every `interval_s`, stop what runs if the lease is lost; once it is back, give up
        the runs stopped meanwhile."""
        while True:
            if self.fenced():
                self.fence()
            elif self.abandoned and self.give_up is not None:
                await self._give_up_abandoned(self.give_up)
            await asyncio.sleep(interval_s)

    async def _give_up_abandoned(self, give_up: GiveUp) -> None:
        for task_id, run_id in list(self.abandoned.items()):
            try:
                await give_up(task_id, run_id)
            except Exception as exc:
                log.warning("stopped run of task %s not given up yet: %r", task_id, exc)
                return
            if self.abandoned.get(task_id) == run_id:
                del self.abandoned[task_id]

    async def handle(self, command: RunTask, ack: Ack) -> None:
        """Run the task of `command` unless it already ran or runs elsewhere.

        Returns once the task's outcome is stored (or it was skipped); the caller then
        acknowledges the command, unless `ack` already did (a task running past the ack
        deadline). Raises `NotTaken` for a command that waited for a slot while the worker began
        to stop, and any other error only when the database cannot be written: the caller
        should then give the command back to the queue.
        """
        current = asyncio.current_task()
        assert current is not None
        self.inflight.add(current)
        self.handling[command.task_id] += 1
        try:
            await self._handle(command, ack)
        finally:
            self.inflight.discard(current)
            self.handling[command.task_id] -= 1
            if not self.handling[command.task_id]:
                del self.handling[command.task_id]

    async def _handle(self, command: RunTask, ack: Ack) -> None:
        early_ack = asyncio.get_running_loop().call_later(
            self.ack_deadline_s, lambda: asyncio.ensure_future(ack())
        )
        try:
            async with self.slots.held(command.priority):
                await self._until_leased()
                if self.stopping:
                    raise NotTaken(command.task_id)
                claim = await self._claim(command)
                if claim is None and await self._took_over(command.task_id):
                    claim = await self._claim(command)
                if claim is not None:
                    decision, reports = await self._run(claim)
            if claim is None:
                await self.runs.decline(command.task_id)
                return
            if isinstance(decision, Abandon):
                self.abandoned[command.task_id] = claim.run_id
                raise Fenced(command.task_id)
            await self._insist(lambda: self._conclude(claim, decision, reports))
        finally:
            early_ack.cancel()

    async def _until_leased(self) -> None:
        """Wait while the lease is lost (or not yet taken): a claim now could not be kept."""
        # A condition of the clock, not of an event: it is looked at again and again.
        while self.fenced() and not self.stopping:  # noqa: ASYNC110
            await asyncio.sleep(LEASE_POLL_S)

    async def _took_over(self, task_id: str) -> bool:
        """Whether the task of a command that could not be claimed was taken from a worker
        without a lease (and is ready to be claimed)."""
        if self.take_over is None:
            return False
        ours_unrun = self.handling[task_id] == 1 and task_id not in self.running
        return await self.take_over(task_id, ours_unrun)

    async def _claim(self, command: RunTask) -> Claim | None:
        """This worker's claim of the task, or None if it is not ours to run.

        A claim whose answer was lost (the database went away while it was in flight) may have
        been stored: that is found out, once the database answers, before anything else is
        decided, so a live worker's task is neither left to the janitor nor run twice.
        """
        task_id = command.task_id
        try:
            return await self.runs.claim(
                task_id, self.worker_name, command.snapshot, command.name, version=command.version
            )
        except DatabaseError as exc:
            if not outcome_unknown(exc):
                raise
            log.warning("claim of task %s unanswered (%r); reading back whose it is", task_id, exc)
        task = await self._insist(lambda: self.runs.tasks.get(task_id))
        if task is None or task.phase is not Phase.HELD or task.run is None:
            return None
        # Held by a run of this worker that this process does not run: the lost claim's.
        if task.run.worker != self.worker_name or task_id in self.running or task.run.id is None:
            return None
        return self.runs.claim_found(task, task.run.id, self.worker_name)

    async def _insist(self, call: Callable[[], Awaitable[T]]) -> T:
        """Call a database operation, retrying through an outage of up to `OUTCOME_PATIENCE_S`.

        Each write is a compare-and-set, so one that was applied before its reply was lost
        simply loses the retry: the stored outcome is the same.
        """
        delay_s = 0.1
        deadline = asyncio.get_running_loop().time() + OUTCOME_PATIENCE_S
        while True:
            try:
                return await call()
            except DatabaseError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("database unavailable (%r); retrying in %.1f s", exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 5.0)

    async def request_cancel(self, task_id: str) -> None:
        """A cancel for `task_id` was broadcast: stop it at its next checkpoint."""
        context = self.running.get(task_id)
        if context is not None:
            context.cancel_requested.set()

    async def shutdown(self, grace_s: float) -> None:
        """Let running tasks finish for `grace_s` seconds, then hand the rest back; commands
        still waiting for a slot are not claimed."""
        self.stopping = True
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=grace_s)
        for context in list(self.running.values()):
            context.hand_back()
        if self.inflight:
            await asyncio.wait(set(self.inflight))

    async def _run(self, claim: Claim) -> tuple[Decision, list[ProgressReport]]:
        context = RunContext(self.runs, self.submissions, claim)
        self.running[claim.task_id] = context
        try:
            decision = await metrics.timed_run(claim.task, self._call_handler(claim, context))
        finally:
            del self.running[claim.task_id]
        if context.fenced:  # whatever the handler did once stopped
            return Abandon(), context.reports
        return decisions.after_asking(decision, context.question), context.reports

    async def _call_handler(self, claim: Claim, context: RunContext) -> Decision:
        if self.fenced():  # the lease was lost while the claim was in flight
            return Abandon()
        prepared = decisions.prepare(claim.task, self.registry)
        if isinstance(prepared, Fail):
            return prepared
        task_type, args = prepared
        handler = asyncio.ensure_future(task_type.handler(args, context))
        context.handler = handler
        stopper = asyncio.ensure_future(self._stop_after_grace(context, handler))
        try:
            returned = await handler
        except AnswerNeeded as signal:
            return AwaitAnswer(signal.question)
        except asyncio.CancelledError:
            if _current_task_cancelling():
                raise  # this worker's own task is being cancelled, not the handler
            return decisions.after_stop(handed_back=context.handed_back, fenced=context.fenced)
        except Exception as exc:
            return decisions.after_error(exc, task_type, context.attempt)
        finally:
            stopper.cancel()
        return decisions.after_return(returned)

    async def _stop_after_grace(self, context: RunContext, handler: asyncio.Future[Any]) -> None:
        await context.cancel_requested.wait()
        await asyncio.sleep(self.cancel_grace_s)
        handler.cancel()

    async def _conclude(
        self, claim: Claim, decision: Decision, reports: list[ProgressReport]
    ) -> None:
        """The one verb the decision names."""
        match decision:
            case Complete(result):
                await self.runs.complete(claim, result, reports)
            case Fail(error, unexpected):
                if unexpected is not None:
                    log.error(
                        "handler of task %s (%s) raised",
                        claim.task_id,
                        claim.task.name,
                        exc_info=unexpected,
                    )
                await self.runs.fail(claim, error, reports)
            case EndCanceled(error):
                await self.runs.end_canceled(claim, error, reports)
            case RetryLater(error, delay_s):
                await self.runs.release(
                    claim, self._attempt("retry", error, delay_s), delay_s=delay_s
                )
            case HandBack():
                await self.runs.release(claim, self._attempt("hand_back", None, 0))
            case AwaitChildren(result):
                await self.runs.await_children(claim, result)
            case AwaitAnswer(question):
                await self.runs.await_answer(claim, question, self._attempt("asked", None, 0))
            case Abandon():
                pass  # the lease is lost: nothing is written (`_handle` never gets here)

    def _attempt(self, outcome: str, error: Any, delay_s: float) -> Attempt:
        return Attempt(
            outcome=outcome,
            worker=self.worker_name,
            error=error,
            ended_at=utcnow(),
            retry_in_s=round(delay_s, 3),
        )


async def _no_ack() -> None:
    """An adopted task came with no command of this worker's to acknowledge."""


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
