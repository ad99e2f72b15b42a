"""Every change of a task after it is stored, as named verbs (as Pulp's task model has a method
for each change).

    claim             waiting/queued, or running/released  →  running/held by a new run
    report            progress of a held task (learns of a cancel or a lost hold)
    release           running/held → running/released, queued again (a retry, a hand-back)
    await_children    held → awaiting_children; ends with its children (`finish_parent`)
    await_answer      held → awaiting_answer: the handler asked its owner; no run holds it
    answer            awaiting_answer → released, queued again with the answer stored
    expire_question   awaiting_answer past its deadline → released with the default, or failed
    complete, fail    held → completed | failed
    end_canceled      canceling/held → canceled (the handler stopped after a cancel)
    cancel            waiting → canceled; running → canceling (and its children); one that
                      no run holds (released, awaiting an answer) then → canceled at once
    lose              held by a worker that went missing → released, failed or canceled
    fail_undeliverable  a dead-lettered command's task → failed
    park              the same, for a task whose document refuses that write: the least
                      write that fails it (no `history` entry)
    finish_parent     awaiting_children → completed | failed | canceled, once every child ended
    decline           a command for a task no run can claim: end it if nobody else will
    hold_by_key       waiting/queued, holding its resources by key: if others queue for them,
                      → waiting/blocked behind them
    take_turn         waiting/blocked: take its resources in order; once it holds them all,
                      → waiting/queued and its command is published
    wake              waiting/scheduled whose time came → waiting/queued (or blocked)

A task that ends (every way of ending goes through `_ended`) leaves its resources' queues, and
the tasks whose turn that gives take it (`take_turn`): see `shared/reservations.py`.

Each verb is one compare-and-set (`shared/store/change.py`): when it matches nothing, someone
else moved the task first, and the verb says so in what it returns. Each verb owns its write,
its metric, and its consequences: a task that ends lets its parent end (`finish_parent`); a
released task's command is queued again. Callers (the worker's runner and janitor, the api's
cancel) say what happens; none builds a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from shared import metrics
from shared.clock import utcnow
from shared.commands import Commands
from shared.ids import new_task_id
from shared.lifecycle import ACTIVE_STATES, FIRST_VERSION, Phase, TaskState
from shared.messages import TaskSnapshot
from shared.questions import Answer, AskedQuestion, no_answer_message
from shared.records import Run, StoredTask
from shared.reservations import Entry, Reservation, WaitingFor, ahead_of, granted
from shared.store import ANY_RUN, Change
from shared.store.dispatch_marks import MARK
from shared.store.reservations import HOLDS
from shared.store.tasks import TaskStore
from shared.task import Attempt, ErrorKind, ProgressReport, TaskError, WorkerRef

log = logging.getLogger(__name__)

_HELD = frozenset({Phase.HELD})
_ASKING = frozenset({Phase.AWAITING_ANSWER})
#: Phases of an active task that no run holds and no command will reach: a cancel ends it.
_UNHELD = frozenset({Phase.RELEASED, Phase.AWAITING_ANSWER})
_BLOCKED = frozenset({Phase.BLOCKED})
_QUEUED = frozenset({Phase.QUEUED})
_SCHEDULED = frozenset({Phase.SCHEDULED})
_WAITING = frozenset({TaskState.WAITING})


class AlreadyFinished(RuntimeError):
    """The task is already in a final state."""

    def __init__(self, task: StoredTask) -> None:
        super().__init__(f"task {task.id} already {task.state}")
        self.task = task


class Hold(Enum):
    """What a held task's run learns from a write to it."""

    #: Still held; go on.
    HELD = "held"
    #: Still held, and a cancel was asked: stop at the next checkpoint.
    CANCELING = "canceling"
    #: No longer held by this run (taken over, or failed by the liveness check): stop.
    LOST = "lost"


@dataclass
class Claim:
    """A run's hold on a task."""

    #: The task as the claim left it.
    task: StoredTask
    run_id: str
    worker: str
    #: The task's version while only this run changed it since the claim; None once unknown.
    version: int | None = None

    @property
    def task_id(self) -> str:
        """The id of the held task."""
        return self.task.id


class Runs:
    """The verbs, on one task store and one command channel."""

    def __init__(self, tasks: TaskStore, commands: Commands, *, outbox_grace_s: float) -> None:
        self.tasks = tasks
        self.commands = commands
        self.outbox_grace_s = outbox_grace_s

    # --- a worker's run --------------------------------------------------------------------

    async def claim(
        self,
        task_id: str,
        worker: str,
        snapshot: TaskSnapshot | None = None,
        name: str = "",
        version: int = FIRST_VERSION,
    ) -> Claim | None:
        """Start a new run of `task_id` on `worker`; None if the task is not claimable (another
        delivery claimed it, it was canceled, it ended).

        A waiting task is at the `version` its command was sent at (its first, or the one its
        queueing after a wait gave it) unless something changed it since, so the claim is first
        tried as a known-version write that the claims of other tasks share (one statement; the
        batch's write id is the run's id), then as the compare-and-set that reads the state from
        the task, then as the claim of a released task. A task claimed at that version is as
        the command's `snapshot` (and `name`) says: the claim knows it without reading it back.
        A claim counts its run as started, and the task's queue wait.
        """
        claim = await self._claim(task_id, worker, snapshot, name, version)
        if claim is not None:
            metrics.claimed(claim.task)
        return claim

    def claim_found(self, task: StoredTask, run_id: str, worker: str) -> Claim:
        """The claim of `task` by `worker` as run `run_id`, stored though its answer was lost
        (the caller read the task back and found it so): counted as `claim` counts one."""
        metrics.claimed(task)
        return Claim(task, run_id, worker)

    async def _claim(
        self, task_id: str, worker: str, snapshot: TaskSnapshot | None, name: str, version: int
    ) -> Claim | None:
        def first_claim(run_id: str, at: datetime) -> Change:
            return claim_change(TaskState.WAITING, worker, run_id, at)

        run_id = await self.tasks.apply_at_version(task_id, TaskState.WAITING, version, first_claim)
        if run_id is not None and snapshot is not None and name:
            claimed = first_run(task_id, name, snapshot, worker, run_id, version=version + 1)
            return Claim(claimed, run_id, worker, version + 1)
        if run_id is None:
            run_id = new_task_id()
            if not await self.tasks.apply_blind(task_id, first_claim(run_id, utcnow())):
                return await self._claim_released(task_id, worker)
        task = await self.tasks.get_shared(task_id)
        # Ours unless, in the instant between, it was canceled and ended: then it is not.
        if task is None or task.run_id != run_id:
            return None
        return Claim(task, run_id, worker, version=task.version)

    async def _claim_released(self, task_id: str, worker: str) -> Claim | None:
        run_id = new_task_id()
        change = claim_change(TaskState.RUNNING, worker, run_id, utcnow())
        task = await self.tasks.apply(task_id, change)
        if task is None or task.run_id != run_id:
            return None
        return Claim(task, run_id, worker)

    async def report(self, claim: Claim, reports: list[ProgressReport]) -> Hold:
        """Store the run's progress reports (all of them: this run is their only writer)."""
        change = Change(
            sources=ACTIVE_STATES,
            phases=_HELD,
            run_id=claim.run_id,
            fields={"progress_reports": reports},
        )
        claim.version = None  # moved on; a later end no longer knows it
        state = await self.tasks.apply_then_state(claim.task_id, change)
        if state is None:
            return Hold.LOST
        return Hold.CANCELING if state is TaskState.CANCELING else Hold.HELD

    async def release(
        self, claim: Claim, attempt: Attempt, *, delay_s: float = 0, error: TaskError | None = None
    ) -> bool:
        """Give a held running task back to the queue, to run again after `delay_s`: its
        attempt is recorded, and its outbox mark makes sure its command is published again.

        A task that is being canceled meanwhile is not released but ended `canceled`. False
        if this run no longer held it.
        """
        if await self._release(claim.task, claim.run_id, attempt, delay_s=delay_s):
            return True
        return await self._end_canceled(claim, TaskError.of(ErrorKind.CANCELED, "canceled"), [])

    async def _release(
        self, task: StoredTask, run_id: str | None, attempt: Attempt, *, delay_s: float
    ) -> bool:
        due = utcnow() + timedelta(seconds=delay_s + self.outbox_grace_s)
        change = Change(
            sources=frozenset({TaskState.RUNNING}),
            phases=_HELD,
            phase=Phase.RELEASED,
            run_id=run_id,
            fields={"run": Run(id=None, released=attempt.outcome), MARK: due},
            push={"attempts": attempt},
        )
        if not await self.tasks.apply_blind(task.id, change):
            return False
        metrics.requeued(task.name, attempt.outcome)
        try:
            await self.commands.run(task.id, task.name, delay_s=delay_s)
        except Exception as exc:
            # The outbox mark stays: the relay publishes the command when it is due.
            log.warning("requeue of task %s not confirmed (%r); the relay will", task.id, exc)
        return True

    async def await_children(self, claim: Claim, join_result: Any) -> bool:
        """The handler returned `WaitForChildren`: free the worker; the task ends with its
        children. False if this run no longer held it."""
        change = Change(
            sources=ACTIVE_STATES,
            phases=_HELD,
            phase=Phase.AWAITING_CHILDREN,
            run_id=claim.run_id,
            fields={"join_result": join_result},
        )
        if not await self.tasks.apply_blind(claim.task_id, change):
            return False
        await self.finish_parent(claim.task_id)
        return True

    # --- questions to the task's owner ------------------------------------------------------

    async def await_answer(self, claim: Claim, question: AskedQuestion, attempt: Attempt) -> bool:
        """The handler asked `question`, which has no answer yet: the task waits for it with the
        question stored, held by no run (its worker's slot is free) and with no command queued.

        A task being canceled meanwhile asks nothing: it ends `canceled`. False if this run no
        longer held it.
        """
        change = Change(
            sources=frozenset({TaskState.RUNNING}),
            phases=_HELD,
            phase=Phase.AWAITING_ANSWER,
            run_id=claim.run_id,
            fields={"question": question, "run": Run(id=None, released=attempt.outcome)},
            push={"attempts": attempt},
        )
        if await self.tasks.apply_blind(claim.task_id, change):
            metrics.question(claim.task.name, "asked")
            return True
        error = TaskError.of(ErrorKind.CANCELED, "canceled as it asked a question")
        return await self._end_canceled(claim, error, [])

    async def answer(
        self, task_id: str, key: str, value: Any, *, by: str | None
    ) -> StoredTask | None:
        """Store `value` as the answer to the question `key` that the task waits on, and queue
        it again: a run on any worker replays its handler, whose `ask` then returns it. `by`
        is who answered (None: the question's timeout, answering its default).

        The task after the change, or None if it was not waiting on that question (answered
        already, canceled, ended): a question is answered once.
        """
        at = utcnow()
        due = at + timedelta(seconds=self.outbox_grace_s)
        change = Change(
            sources=frozenset({TaskState.RUNNING}),
            phases=_ASKING,
            phase=Phase.RELEASED,
            guard={"question.key": key},
            fields={MARK: due, "run": Run(id=None, released="answered")},
            push={"answers": Answer(key=key, value=value, by=by, at=at, timed_out=by is None)},
            unset=frozenset({"question"}),
        )
        task = await self.tasks.apply(task_id, change)
        if task is None:
            return None
        metrics.question(task.name, "answered" if by is not None else "defaulted")
        try:
            await self.commands.run(task_id, task.name)
        except Exception as exc:
            # The outbox mark stays: the relay publishes the command when it is due.
            log.warning(
                "command of answered task %s not confirmed (%r); the relay will", task_id, exc
            )
        return task

    async def expire_question(self, task: StoredTask) -> TaskState | None:
        """The question `task` waits on is past its deadline: its default becomes the answer
        (the task runs again), or, with no default, the task fails `no_answer`. A task being
        canceled ends `canceled` instead. What became of it, or None if it had moved on."""
        question = task.question
        if task.state is TaskState.CANCELING:
            canceled = await self._end_unheld_cancel(task)
            return canceled.state if canceled.final else None
        if question is None:
            return None
        if question.default is not None:
            answered = await self.answer(task.id, question.key, question.default, by=None)
            return None if answered is None else TaskState.RUNNING
        reason = no_answer_message(question)
        ended = await self.tasks.apply(
            task.id,
            Change(
                sources=frozenset({TaskState.RUNNING}),
                target=TaskState.FAILED,
                phases=_ASKING,
                guard={"question.key": question.key},
                fields={"error": TaskError.of(ErrorKind.NO_ANSWER, reason)},
                unset=frozenset({"question"}),
                reason=reason,
            ),
        )
        if ended is None:
            return None
        metrics.question(task.name, "expired")
        await self._ended(ended, TaskState.FAILED)
        return TaskState.FAILED

    async def complete(self, claim: Claim, result: Any, reports: list[ProgressReport]) -> bool:
        """The handler returned `result`. False if this run no longer held the task."""
        return await self._end(claim, TaskState.COMPLETED, {"result": result}, reports)

    async def fail(self, claim: Claim, error: TaskError, reports: list[ProgressReport]) -> bool:
        """The handler failed with `error` (or the task could not run). False if this run no
        longer held the task."""
        return await self._end(claim, TaskState.FAILED, {"error": error}, reports)

    async def end_canceled(
        self, claim: Claim, error: TaskError, reports: list[ProgressReport]
    ) -> bool:
        """The handler stopped after a cancel (at a checkpoint, or stopped after the grace
        time). One that gave up with no cancel asked has failed instead. False if this run no
        longer held the task."""
        if await self._end_canceled(claim, error, reports):
            return True
        message = "the handler stopped without a cancel request"
        return await self.fail(claim, TaskError.of(ErrorKind.CANCELED, message), reports)

    async def _end_canceled(
        self, claim: Claim, error: TaskError, reports: list[ProgressReport]
    ) -> bool:
        change = Change(
            sources=frozenset({TaskState.CANCELING}),
            target=TaskState.CANCELED,
            phases=_HELD,
            run_id=claim.run_id,
            fields=_end_fields(TaskState.CANCELED, {"error": error}, reports),
            worker=claim.worker,
        )
        if not await self.tasks.apply_blind(claim.task_id, change):
            return False
        await self._ended(claim.task, TaskState.CANCELED)
        return True

    async def _end(
        self,
        claim: Claim,
        target: TaskState,
        fields: dict[str, Any],
        reports: list[ProgressReport],
    ) -> bool:
        change = end_change(
            target, claim.run_id, _end_fields(target, fields, reports), claim.worker
        )
        written = False
        if claim.version is not None:
            # Nothing but the claim changed the task: the end shares a statement with other
            # tasks' ends of the same outcome (a miss just costs the compare-and-set below).
            version = claim.version
            written = (
                await self.tasks.apply_at_version(
                    claim.task_id, TaskState.RUNNING, version, lambda _id, _at: change
                )
                is not None
            )
        if not written:
            written = await self.tasks.apply_blind(claim.task_id, change)
        if not written:
            log.warning(
                "task %s was taken from run %s before it ended", claim.task_id, claim.run_id
            )
            return False
        await self._ended(claim.task, target)
        return True

    # --- the api's cancel ------------------------------------------------------------------

    async def cancel(self, task_id: str) -> StoredTask | None:
        """Cancel a task and its children: `waiting` ends `canceled` now; `running` becomes
        `canceling`, and the run that holds it stops it at its next checkpoint (a released
        task, which nobody runs, ends `canceled` at once).

        Returns the task after the change (or as it is, if already `canceling`), None if it
        does not exist; raises `AlreadyFinished` for a finished task.
        """
        task = await self._cancel_one(task_id)
        if task is None:
            return None
        for child in await self.tasks.children(task):
            if not child.final:
                with contextlib.suppress(AlreadyFinished):
                    await self.cancel(child.id)
        if not task.final:
            await self.finish_parent(task_id)
        return await self.tasks.get(task_id) or task

    async def _cancel_one(self, task_id: str) -> StoredTask | None:
        # Each step is a compare-and-set; losing one means the state moved on, so look again.
        for _ in range(5):
            reason = "canceled before it ran"
            task = await self.tasks.apply(
                task_id,
                Change(
                    sources=frozenset({TaskState.WAITING}),
                    target=TaskState.CANCELED,
                    fields={"error": TaskError.of(ErrorKind.CANCELED, reason)},
                    unset=frozenset({MARK, "waiting_for"}),
                    reason=reason,
                ),
            )
            if task is not None:
                await self._ended(task, TaskState.CANCELED)
                return task
            task = await self.tasks.apply(
                task_id,
                Change(
                    sources=frozenset({TaskState.RUNNING}),
                    target=TaskState.CANCELING,
                    reason="cancel requested",
                ),
            )
            if task is not None:
                if task.phase in _UNHELD:
                    return await self._end_unheld_cancel(task)
                if task.phase is Phase.HELD:
                    await self.commands.cancel(task_id)
                return task
            current = await self.tasks.get(task_id)
            if current is None:
                return None
            if current.final:
                raise AlreadyFinished(current)
            if current.state is TaskState.CANCELING:
                # One that nobody holds was left between the cancel's two steps: end it now.
                if current.phase in _UNHELD:
                    return await self._end_unheld_cancel(current)
                return current
        raise RuntimeError(f"cancel of task {task_id} kept losing races")

    async def _end_unheld_cancel(self, task: StoredTask) -> StoredTask:
        """End a `canceling` task that no run holds (it was queued again, or waits for an
        answer): nobody else will."""
        if task.phase is Phase.AWAITING_ANSWER:
            reason = "canceled while waiting for an answer"
        else:
            reason = "canceled while queued again"
        ended = await self.tasks.apply(
            task.id,
            Change(
                sources=frozenset({TaskState.CANCELING}),
                target=TaskState.CANCELED,
                phases=_UNHELD,
                fields={"error": TaskError.of(ErrorKind.CANCELED, reason)},
                unset=frozenset({"question"}),
                reason=reason,
            ),
        )
        if ended is None:
            return await self.tasks.get(task.id) or task
        await self._ended(ended, TaskState.CANCELED)
        return ended

    # --- repairs: the janitor and the dead-letter queue ------------------------------------

    async def lose(self, task: StoredTask, *, requeue: bool) -> TaskState | None:
        """The worker holding `task` went missing: a task being canceled ends `canceled`; one
        whose type allows it (`requeue`) runs again elsewhere; any other fails. What became of
        it (`running` for requeued), or None if the run had moved it on meanwhile."""
        worker = (task.worker or WorkerRef(name="unknown")).model_copy(update={"missing": True})
        reason = f"worker {worker.name} went missing"
        if task.state is TaskState.RUNNING and requeue:
            attempt = Attempt(
                outcome="worker_lost",
                worker=worker.name,
                error=TaskError.of(ErrorKind.WORKER_LOST, reason),
                ended_at=utcnow(),
            )
            if not await self._release(task, task.run_id, attempt, delay_s=0):
                return None
            metrics.worker_lost(task.name, "requeued")
            log.warning("task %s requeued: %s", task.id, reason)
            return TaskState.RUNNING
        target = TaskState.CANCELED if task.state is TaskState.CANCELING else TaskState.FAILED
        kind = ErrorKind.CANCELED if target is TaskState.CANCELED else ErrorKind.WORKER_LOST
        ended = await self.tasks.apply(
            task.id,
            Change(
                sources=frozenset({task.state}),
                target=target,
                phases=_HELD,
                run_id=task.run_id,
                fields={"worker": worker, "error": TaskError.of(kind, reason)},
                reason=reason,
            ),
        )
        if ended is None:
            return None
        metrics.worker_lost(task.name, target.value)
        log.warning("task %s ended %s: %s", task.id, target.value, reason)
        await self._ended(ended, target)
        return target

    async def fail_undeliverable(self, task_id: str, reason: str) -> bool:
        """The task's command was dead-lettered (`reason` is RabbitMQ's): the task fails, unless
        it already ended. Whether it was failed now."""
        message = f"its command could not be run and was dead-lettered ({reason})"
        ended = await self.tasks.apply(
            task_id, _dead_lettered(message, reason=f"dead-lettered: {reason}")
        )
        if ended is None:
            return False
        # Counted once it is written: a try the database refused, tried again, is one command.
        metrics.DEAD_LETTERS.labels(reason).inc()
        log.error("task %s failed: its command was dead-lettered (%s)", task_id, reason)
        await self._ended(ended, TaskState.FAILED)
        return True

    async def park(self, task_id: str, reason: str) -> bool:
        """The task of a dead-lettered command that `fail_undeliverable` could not fail, try
        after try (the database refuses the write), fails all the same by the least write that
        says so: its state, phase, finish time and error, and its version moved on (the
        notifier pushes a change by its version), with no `history` entry, the part of the
        usual write that reads what the document holds. `reason` is RabbitMQ's. Whether it was
        failed now; raises if the database refuses even this.

        What its end gives other tasks (its resources, its parent's end) needs the task read
        back: a document that cannot be read as a task gets none of it here, and the janitor
        releases the resources of a task it cannot read."""
        message = (
            f"its command could not be run and was dead-lettered ({reason}); the task could "
            "not be recorded in full, and its command was parked for an operator"
        )
        # No `history` entry: the part of the usual write that reads what the document holds.
        failed = await self.tasks.apply_blind(task_id, _dead_lettered(message, history=False))
        if not failed:
            return False
        metrics.DEAD_LETTERS.labels(reason).inc()
        log.error("task %s failed: its dead-lettered command was parked (%s)", task_id, reason)
        try:
            ended = await self.tasks.get(task_id)
            if ended is not None:
                await self._ended(ended, TaskState.FAILED)
        except Exception as exc:
            # It has ended all the same: the parked command must not be tried again for this,
            # and what is left undone the janitor's repairs settle.
            log.warning("task %s failed, but its end was not followed through: %r", task_id, exc)
        return True

    async def decline(self, task_id: str) -> None:
        """A delivered command whose task this worker could not claim. A task being canceled
        that no run holds (its command was queued again) ends `canceled` here; any other is
        someone else's to move on (the run holding it, or the janitor), so nothing is done."""
        current = await self.tasks.get(task_id)
        if current is None:
            log.info("task %s no longer exists; dropping its command", task_id)
            reason = "gone"
        elif current.final:
            log.info("task %s already %s; not running it again", task_id, current.state)
            reason = "ended"
        elif current.state is TaskState.CANCELING and current.phase in _UNHELD:
            await self._end_unheld_cancel(current)
            reason = "canceled"
        else:
            log.info("task %s is held by another run; dropping this copy", task_id)
            reason = "held"
        metrics.COMMANDS_DECLINED.labels(reason=reason).inc()

    # --- parents ---------------------------------------------------------------------------

    async def finish_parent(self, parent_id: str) -> None:
        """End a task that awaits its children, if they have all ended: completed if every child
        completed; canceled if it was being canceled; else failed. Called after each child ends,
        and by the janitor for parents left behind by a crash."""
        parent = await self.tasks.get(parent_id)
        if parent is None or parent.phase is not Phase.AWAITING_CHILDREN or parent.final:
            return
        children = await self.tasks.children(parent)
        if any(not child.final for child in children):
            return
        not_completed = [c for c in children if c.state is not TaskState.COMPLETED]
        fields: dict[str, Any]
        sources = ACTIVE_STATES
        if not not_completed:
            target, fields = TaskState.COMPLETED, {"result": parent.join_result}
        elif parent.state is TaskState.CANCELING:
            target = TaskState.CANCELED
            sources = frozenset({TaskState.CANCELING})
            error = TaskError.of(ErrorKind.CANCELED, "canceled with its children")
            fields = {"error": error}
        else:
            target = TaskState.FAILED
            message = f"{len(not_completed)} of {len(children)} child tasks did not complete"
            fields = {"error": TaskError.of(ErrorKind.CHILD_FAILED, message)}
        ended = await self.tasks.apply(
            parent_id,
            Change(
                sources=sources,
                target=target,
                phases=frozenset({Phase.AWAITING_CHILDREN}),
                run_id=ANY_RUN,
                fields=fields,
            ),
        )
        if ended is not None:
            await self._ended(ended, target)

    async def _ended(self, task: StoredTask, state: TaskState) -> None:
        """A task reached a final state: count it; it releases its resources (the next tasks
        waiting for them get their turn); its parent may now be able to end too."""
        metrics.finished(task.name, state.value)
        if task.reservations:
            await self.release_resources(task.id, task.reservations)
        if task.parent_id is not None:
            await self.finish_parent(task.parent_id)

    # --- reservations and schedules --------------------------------------------------------

    async def enter_queues(
        self,
        task_id: str,
        reservations: list[Reservation],
        *,
        fresh: bool = False,
        known: Mapping[str, list[Entry]] | None = None,
        looked: bool = False,
    ) -> WaitingFor | None:
        """Take the resources in their order, joining each queue once the one before is held:
        None when the task holds them all, else what it waits for (it is in that queue). A
        `fresh` task (just submitted) is in no queue yet, which spares a read of each; so does
        a queue `known` as it was just now (a leave's answer: entries only leave it meanwhile,
        and a task that held a resource holds it still).

        First in every queue it is in, it still waits for any task that holds one of them by
        key: it looks, after its last entering, as a holder by key looks at the queues after its
        insert (`hold_by_key`): of two such tasks meeting, one sees the other. So a task that
        gets its turn by a queue takes no key: its entry keeps a holder by key out until it
        leaves, and its queueing is a plain compare-and-set that shares a statement with
        others' (a take by key would go alone, to fail alone). A task that `looked` already
        since it entered the queues it is in, and enters none now, need not look again."""
        queues = self.tasks.reservations
        entered = False
        for reservation in reservations:
            if fresh:
                entries = []
            elif known is not None and reservation.resource in known:
                entries = known[reservation.resource]
            else:
                entries = await queues.queue(reservation.resource)
            if not any(entry.task == task_id for entry in entries):
                entries = await queues.enter(
                    reservation.resource, task_id, reservation.mode, utcnow()
                )
                entered = True
            holder = ahead_of(entries, task_id)
            if holder is not None:
                return WaitingFor(resource=reservation.resource, holder=holder)
        if looked and not entered:
            return None
        return await self._key_holder(task_id, [r.resource for r in reservations])

    async def _key_holder(self, task_id: str, resources: list[str]) -> WaitingFor | None:
        """The first of `resources` that a task other than `task_id` holds by key, and who."""
        held = await self.tasks.holders(resources, besides=task_id)
        for resource in resources:
            if resource in held:
                return WaitingFor(resource=resource, holder=held[resource])
        return None

    async def hold_by_key(self, task: StoredTask) -> StoredTask | None:
        """A task just stored holding its resources by key (`TaskStore.insert_holding`), and
        not yet published, looks at their queues: None if none has an entry (it holds them and
        its command may go); else it gives its keys up and queues behind those entries, as a
        task that found a resource taken does, and the task as it then is (blocked, or queued
        with its command published if its turn came at once).

        The queues are read after the insert, and a queue's task looks for holders by key
        after entering (`enter_queues`), so a task never runs beside one that queued first.
        It keeps its keys where those first in line all wait for it (they saw its keys): so
        the relay may ask again, for a task whose submitter died before asking, and a task
        already published is not put behind those that came after it."""
        names = [reservation.resource for reservation in task.reservations]
        queues = await self.tasks.reservations.queues(names)
        if not any(queues.values()) or await self._waited_for(task.id, queues):
            return None
        change = Change(
            sources=_WAITING,
            phases=_QUEUED,
            phase=Phase.BLOCKED,
            unset=frozenset({HOLDS, MARK}),
        )
        blocked = await self.tasks.apply(task.id, change)
        if blocked is None:
            return await self.tasks.get(task.id)  # canceled meanwhile, say
        log.info("task %s queues behind others for %s", task.id, ", ".join(names))
        # Those who saw its keys wait for it: they may go first now.
        await self._give_turns(queues)
        await self.take_turn(blocked)
        return await self.tasks.get(task.id)

    async def take_turn(
        self,
        task: StoredTask,
        known: Mapping[str, list[Entry]] | None = None,
        given_by: str | None = None,
    ) -> bool:
        """A task waiting for its resources takes those it can, in order: when it holds them
        all, it is queued (with its outbox mark) and its command published; else it records
        what it waits for now. Idempotent: a leave that gave it its turn, its submission, and
        the janitor may all call it. Whether it was queued by this call.

        A turn `given_by` the task it waited for (that task's end removed its keys, then it
        left its queues) needs no new look for holders by key, unless the task enters another
        queue now: while it was in line behind another, any task that took one of its
        resources by key found that queue's first entry not waiting for it and gave way, so
        the one it waited for was the only holder that could keep its keys."""
        if task.state is not TaskState.WAITING or task.phase is not Phase.BLOCKED:
            return False
        looked = (
            given_by is not None
            and task.waiting_for is not None
            and task.waiting_for.holder == given_by
        )
        waiting = await self.enter_queues(task.id, task.reservations, known=known, looked=looked)
        if waiting is None:
            return await self._queue_waiting(task, _BLOCKED)
        if waiting != task.waiting_for:
            await self.tasks.apply_blind(
                task.id,
                Change(sources=_WAITING, phases=_BLOCKED, fields={"waiting_for": waiting}),
            )
        return False

    async def wake(self, task_id: str) -> bool:
        """A scheduled task whose time came is queued (or, if a resource it needs is taken,
        waits for it). Whether this call queued or blocked it (False: someone else did, or it
        was canceled). A crash half-way leaves its outbox mark due: the relay wakes it again."""
        task = await self.tasks.get(task_id)
        if task is None or task.state is not TaskState.WAITING or task.phase is not Phase.SCHEDULED:
            return False
        if task.dispatch_due_at is not None and task.dispatch_due_at > utcnow():
            return False  # not yet
        waiting = await self.enter_queues(task.id, task.reservations) if task.reservations else None
        if waiting is None:
            return await self._queue_waiting(task, _SCHEDULED)
        blocked = await self.tasks.apply(
            task.id,
            Change(
                sources=_WAITING,
                phases=_SCHEDULED,
                phase=Phase.BLOCKED,
                fields={"waiting_for": waiting},
                unset=frozenset({MARK}),
            ),
        )
        if blocked is None:
            return False
        # The holder may have ended between the look at the queue and this write.
        await self.take_turn(blocked)
        return True

    async def _queue_waiting(self, task: StoredTask, phases: frozenset[Phase]) -> bool:
        """Queue a waiting task whose turn (or time) came, and publish its command. Whether this
        call queued it."""
        due = utcnow() + timedelta(seconds=self.outbox_grace_s)
        change = Change(
            sources=_WAITING,
            phases=phases,
            phase=Phase.QUEUED,
            fields={MARK: due},
            unset=frozenset({"waiting_for"}),
        )
        # As read, the task is at its version: then the command can tell the claim what the
        # task is, and the change shares a statement with others' (so does the claim).
        at_version = (
            await self.tasks.apply_at_version(
                task.id, TaskState.WAITING, task.version, lambda _id, _at: change
            )
            is not None
        )
        if not at_version and not await self.tasks.apply_blind(task.id, change):
            return False
        # A task that waited for its turn goes ahead of the commands queued meanwhile, by the
        # high-priority lane: it came before them, and behind them each turn of a busy
        # resource would wait for the whole backlog (measured: 2 s a turn at 250 tasks/s).
        lane = max(task.priority, 1) if phases is _BLOCKED else task.priority
        try:
            if at_version:
                await self.commands.run(
                    task.id,
                    task.name,
                    priority=lane,
                    snapshot=task.snapshot(),
                    version=task.version + 1,
                )
            else:
                await self.commands.run(task.id, task.name, priority=lane)
        except Exception as exc:
            log.warning("publish of task %s failed: %r; the relay will", task.id, exc)
        return True

    async def _waited_for(self, task_id: str, queues: Mapping[str, list[Entry]]) -> bool:
        """Whether every task first in line in `queues` is blocked waiting for `task_id`."""
        ahead = {turn for entries in queues.values() for turn in granted(entries)}
        found = await asyncio.gather(*(self.tasks.get_shared(turn) for turn in ahead))
        return all(
            waiter is not None
            and waiter.phase is Phase.BLOCKED
            and waiter.waiting_for is not None
            and waiter.waiting_for.holder == task_id
            for waiter in found
        )

    async def release_resources(self, task_id: str, reservations: list[Reservation]) -> None:
        """The task `task_id` no longer holds `reservations` (it ended, or was never queued):
        it leaves the queues it is in, and each task whose turn that gives takes it. A task
        that held them by key is in no queue, and its end removed its keys; but others may
        have queued behind it, so their queues are read all the same (one shared read)."""
        names = [reservation.resource for reservation in reservations]
        queues = await self.tasks.reservations.queues(names)
        # All its queues at once (one batch of queue changes), not one after the other.
        leaving = [r for r in names if any(entry.task == task_id for entry in queues[r])]
        left = await asyncio.gather(*(self.tasks.reservations.leave(r, task_id) for r in leaving))
        queues.update(zip(leaving, left, strict=True))
        await self._give_turns(queues, given_by=task_id)

    async def _give_turns(
        self, queues: Mapping[str, list[Entry]], given_by: str | None = None
    ) -> None:
        """Each blocked task first in line in `queues` takes its turn (`take_turn`)."""
        turns: list[str] = []
        for entries in queues.values():
            turns += [t for t in granted(entries) if t not in turns]
        # Those holding the resource now may have held it before (running), or have been given
        # their turn by this leave or by another one: `take_turn` queues each blocked one once.
        waiters = await asyncio.gather(*(self.tasks.get_shared(turn) for turn in turns))
        for waiter in waiters:
            if waiter is not None and waiter.phase is Phase.BLOCKED:
                await self.take_turn(waiter, known=queues, given_by=given_by)


def _dead_lettered(message: str, *, reason: str | None = None, history: bool = True) -> Change:
    """A task whose command was dead-lettered fails, unless it already ended."""
    return Change(
        sources=frozenset({TaskState.WAITING, *ACTIVE_STATES}),
        target=TaskState.FAILED,
        fields={"error": TaskError.of(ErrorKind.DEAD_LETTERED, message)},
        reason=reason,
        history=history,
    )


def first_run(
    task_id: str,
    name: str,
    snapshot: TaskSnapshot,
    worker: str,
    run_id: str,
    *,
    version: int,
) -> StoredTask:
    """A task as its first claim left it (at `version`), from what its command carried."""
    at = utcnow()
    return StoredTask(
        id=task_id,
        name=name,
        state=TaskState.RUNNING,
        phase=Phase.HELD,
        owner=snapshot.owner,
        created_at=snapshot.created_at,
        updated_at=at,
        started_at=at,
        args=snapshot.args,
        parent_id=snapshot.parent_id,
        reservations=snapshot.reservations,
        worker=WorkerRef(name=worker, last_heartbeat=at),
        run=Run(id=run_id, worker=worker),
        runs=1,
        version=version,
    )


def end_change(target: TaskState, run_id: str, fields: dict[str, Any], worker: str) -> Change:
    """The run `run_id` ends the task it holds in `target`, storing `fields`."""
    return Change(
        sources=ACTIVE_STATES,
        target=target,
        phases=_HELD,
        run_id=run_id,
        fields=fields,
        worker=worker,
    )


def claim_change(source: TaskState, worker: str, run_id: str, at: datetime) -> Change:
    """A new run on `worker` takes a task: a waiting one (its first run) or a released one. The
    claim also clears the outbox mark: it proves the command was delivered."""
    return Change(
        sources=frozenset({source}),
        target=TaskState.RUNNING if source is TaskState.WAITING else None,
        phases=frozenset({Phase.QUEUED if source is TaskState.WAITING else Phase.RELEASED}),
        phase=Phase.HELD,
        fields={
            "worker": WorkerRef(name=worker, last_heartbeat=at, missing=False),
            "run": Run(id=run_id, worker=worker),
        },
        inc={"runs": 1},
        unset=frozenset({MARK}),
        worker=worker if source is TaskState.WAITING else None,
    )


def _end_fields(
    target: TaskState, fields: dict[str, Any], reports: list[ProgressReport]
) -> dict[str, Any]:
    """What an end stores besides the state: `result` and `error` (one of them None), and the
    run's reports, those still running ending in the task's final state."""
    stored = {"result": None, "error": None, **fields}
    if reports:
        stored["progress_reports"] = [
            r.model_copy(update={"state": target}) if r.state is TaskState.RUNNING else r
            for r in reports
        ]
    return stored
