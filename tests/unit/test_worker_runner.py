"""The runner around a handler, on fakes of the verbs: one claim, one concluding verb, and the
cancel grace, the hand-back and a lost answer handled on the way."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from pydantic import BaseModel

from services.worker.decisions import STOPPED_AFTER_GRACE
from services.worker.lease import LeaseClock
from services.worker.runner import Fenced, NotTaken, Runner
from shared.clock import utcnow
from shared.lifecycle import Phase, TaskState
from shared.messages import RunTask
from shared.questions import Answer, AskedQuestion, Question
from shared.records import Run, StoredTask
from shared.registry import Registry, TaskContext, TaskType
from shared.retries import RetryPolicy
from shared.runs import Claim, Hold, Runs
from shared.store.errors import DatabaseUnreachable
from shared.submission import Submissions
from shared.task import ProgressReport
from shared.tasks import Retry
from tests.support import eventually, stored_task

WORKER = "w1"


#: Events a "gated ask" handler waits on before it asks, by task id.
GATES: dict[str, asyncio.Event] = {}


class Args(BaseModel):
    mode: str = "return"


async def handler(args: Args, ctx: TaskContext) -> Any:
    """Ends as `mode` says."""
    if args.mode == "ask":
        return {"answer": await ctx.ask(Question.approval("Go on?"))}
    if args.mode == "gated ask":
        await GATES.setdefault(ctx.task_id, asyncio.Event()).wait()
        return {"answer": await ctx.ask(Question.approval("Go on?"))}
    if args.mode == "swallow":
        try:
            await ctx.ask(Question.approval("Go on?"))
        except BaseException:
            return {"answer": "made up"}
    if args.mode == "return":
        step = await ctx.report("working", "unit.work", total=1)
        await step.advance()
        return {"ok": True}
    if args.mode == "retry":
        raise Retry("again", delay_s=3)
    if args.mode == "stubborn":
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            return {"ok": "anyway"}
    # "hang": never reaches a checkpoint
    await asyncio.Event().wait()


@dataclass
class FakeTasks:
    """What the runner reads of the task store: one task by id."""

    stored: dict[str, StoredTask] = field(default_factory=dict)

    async def get(self, task_id: str) -> StoredTask | None:
        return self.stored.get(task_id)


@dataclass
class FakeRuns:
    """Records the verbs the runner calls; claims hand out the tasks it was given."""

    tasks: FakeTasks = field(default_factory=FakeTasks)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    #: Claims that raise this error (and still take the task), as a lost answer would.
    claim_error: Exception | None = None
    #: Ends that fail this many times with a lost connection first.
    failing_ends: int = 0
    #: Tasks held by another run: their claims find nothing.
    held_elsewhere: set[str] = field(default_factory=set)

    async def claim(
        self, task_id: str, worker: str, snapshot: object = None, name: str = "", version: int = 1
    ) -> Claim | None:
        task = self.tasks.stored.get(task_id)
        if task is None or task_id in self.held_elsewhere:
            return None
        held = task.model_copy(
            update={
                "state": TaskState.RUNNING,
                "phase": Phase.HELD,
                "run": Run(id="r1", worker=worker),
            }
        )
        self.tasks.stored[task_id] = held
        if self.claim_error is not None:
            raise self.claim_error
        return Claim(held, "r1", worker, version=2)

    def claim_found(self, task: StoredTask, run_id: str, worker: str) -> Claim:
        self.calls.append(("claim_found", run_id))
        return Claim(task, run_id, worker)

    async def decline(self, task_id: str) -> None:
        self.calls.append(("decline", task_id))

    async def report(self, claim: Claim, reports: list[ProgressReport]) -> Hold:
        self.calls.append(("report", [r.done for r in reports]))
        return Hold.HELD

    async def _end(self, verb: str, detail: Any) -> bool:
        if self.failing_ends:
            self.failing_ends -= 1
            raise DatabaseUnreachable("connection lost")
        self.calls.append((verb, detail))
        return True

    async def complete(self, claim: Claim, result: Any, reports: list[ProgressReport]) -> bool:
        return await self._end("complete", result)

    async def fail(self, claim: Claim, error: Any, reports: list[ProgressReport]) -> bool:
        return await self._end("fail", error.type)

    async def end_canceled(self, claim: Claim, error: Any, reports: list[ProgressReport]) -> bool:
        return await self._end("end_canceled", error.message)

    async def release(self, claim: Claim, attempt: Any, *, delay_s: float = 0) -> bool:
        return await self._end("release", (attempt.outcome, delay_s))

    async def await_children(self, claim: Claim, result: Any) -> bool:
        return await self._end("await_children", result)

    async def await_answer(self, claim: Claim, question: AskedQuestion, attempt: Any) -> bool:
        return await self._end("await_answer", (question.key, attempt.outcome))


def runner_on(runs: FakeRuns, **options: Any) -> Runner:
    registry = Registry()
    policy = RetryPolicy(max_attempts=3)
    registry.add(TaskType("unit.t", "T", "", Args, handler, retry=policy))
    return Runner(cast(Runs, runs), cast(Submissions, None), registry, WORKER, **options)


def queued(runs: FakeRuns, mode: str, **fields: Any) -> RunTask:
    task = stored_task(name="unit.t", args={"mode": mode}, **fields)
    runs.tasks.stored[task.id] = task
    return RunTask(task_id=task.id, name="unit.t")


async def until_running(runner: Runner, task_id: str) -> None:
    async def running() -> bool:
        return task_id in runner.running

    await eventually(running, bool, timeout_s=5)


async def never_acked() -> None:
    raise AssertionError("acknowledged before the deadline")


async def test_a_handler_that_returns_is_claimed_once_and_completed_once() -> None:
    runs = FakeRuns()
    await runner_on(runs).handle(queued(runs, "return"), never_acked)
    assert runs.calls == [("report", [0]), ("report", [1]), ("complete", {"ok": True})]


async def test_a_command_whose_task_cannot_be_claimed_is_declined() -> None:
    runs = FakeRuns()
    await runner_on(runs).handle(RunTask(task_id="gone", name="unit.t"), never_acked)
    assert runs.calls == [("decline", "gone")]


async def test_a_retry_releases_the_task_with_the_delay_it_asked_for() -> None:
    runs = FakeRuns()
    await runner_on(runs).handle(queued(runs, "retry"), never_acked)
    assert runs.calls == [("release", ("retry", 3))]


async def test_a_handler_that_ignores_a_cancel_is_stopped_after_the_grace_time() -> None:
    runs = FakeRuns()
    runner = runner_on(runs, cancel_grace_s=0.05)
    command = queued(runs, "hang")
    handling = asyncio.create_task(runner.handle(command, never_acked))
    await until_running(runner, command.task_id)
    await runner.request_cancel(command.task_id)
    await asyncio.wait_for(handling, 5)
    assert runs.calls == [("end_canceled", STOPPED_AFTER_GRACE)]


async def test_a_stopping_worker_hands_back_what_outlasts_its_grace() -> None:
    runs = FakeRuns()
    runner = runner_on(runs)
    command = queued(runs, "hang")
    handling = asyncio.create_task(runner.handle(command, never_acked))
    await until_running(runner, command.task_id)
    await runner.shutdown(grace_s=0.01)
    await handling
    assert runs.calls == [("release", ("hand_back", 0))]


async def test_a_claim_whose_answer_was_lost_is_read_back_and_the_task_run_here() -> None:
    # The claim was stored, but its answer lost: the task is held by this worker's run, which
    # nobody runs. It must run here, not wait for the janitor to call a live worker missing.
    runs = FakeRuns(claim_error=DatabaseUnreachable("connection lost"))
    await runner_on(runs).handle(queued(runs, "return"), never_acked)
    assert runs.calls[0] == ("claim_found", "r1")  # the verbs count it as claimed
    assert runs.calls[-1] == ("complete", {"ok": True})


async def test_a_claim_whose_answer_was_lost_and_that_did_not_apply_is_declined() -> None:
    runs = FakeRuns(claim_error=DatabaseUnreachable("connection lost"))
    command = queued(runs, "return")
    other = runs.tasks.stored[command.task_id].model_copy(
        update={"state": TaskState.RUNNING, "phase": Phase.HELD, "run": Run(id="r9", worker="w2")}
    )

    async def claim_by_another(
        task_id: str, worker: str, snapshot: object = None, name: str = "", version: int = 1
    ) -> Claim | None:
        runs.tasks.stored[task_id] = other
        raise DatabaseUnreachable("connection lost")

    runs.claim = claim_by_another  # type: ignore[method-assign]
    await runner_on(runs).handle(command, never_acked)
    assert runs.calls == [("decline", command.task_id)]


async def test_an_outcome_is_stored_through_a_database_outage() -> None:
    runs = FakeRuns(failing_ends=2)
    await runner_on(runs).handle(queued(runs, "retry"), never_acked)
    assert runs.calls == [("release", ("retry", 3))]


@pytest.mark.parametrize("mode", ["ask", "swallow"])
async def test_a_question_without_an_answer_ends_the_run_waiting_for_it(mode: str) -> None:
    runs = FakeRuns()
    runner = runner_on(runs)
    await runner.handle(queued(runs, mode), never_acked)
    assert runs.calls == [("await_answer", ("question-1", "asked"))]
    assert runner.running == {}


async def test_the_run_after_the_answer_finds_it_where_the_question_is_asked_again() -> None:
    runs = FakeRuns()
    answer = Answer(key="question-1", value="approve", by="alice", at=utcnow())
    await runner_on(runs).handle(queued(runs, "ask", answers=[answer]), never_acked)
    assert runs.calls == [("complete", {"answer": "approve"})]


async def test_a_run_asked_to_cancel_asks_nothing() -> None:
    runs = FakeRuns()
    runner = runner_on(runs)
    command = queued(runs, "gated ask")
    handling = asyncio.create_task(runner.handle(command, never_acked))
    await until_running(runner, command.task_id)
    await runner.request_cancel(command.task_id)
    # Only now does the handler reach its question.
    GATES.setdefault(command.task_id, asyncio.Event()).set()
    await asyncio.wait_for(handling, 5)
    assert [verb for verb, _ in runs.calls] == ["end_canceled"]


@pytest.mark.parametrize("mode", ["return", "retry"])
async def test_nothing_is_left_running_or_in_flight_afterwards(mode: str) -> None:
    runs = FakeRuns()
    runner = runner_on(runs)
    await runner.handle(queued(runs, mode), never_acked)
    assert runner.running == {}
    assert runner.inflight == set()


async def test_no_more_tasks_than_the_concurrency_are_claimed_or_run_at_once() -> None:
    runs = FakeRuns()
    runner = runner_on(runs, concurrency=2)
    commands = [queued(runs, "hang") for _ in range(5)]
    handling = [asyncio.create_task(runner.handle(c, never_acked)) for c in commands]
    await until_running(runner, commands[0].task_id)
    await until_running(runner, commands[1].task_id)
    # The other three wait for a slot: not claimed, so another worker could take them.
    assert set(runner.running) == {commands[0].task_id, commands[1].task_id}
    assert all(runs.tasks.stored[c.task_id].state is TaskState.WAITING for c in commands[2:])
    await runner.shutdown(grace_s=0)
    ended = await asyncio.gather(*handling, return_exceptions=True)
    # The two that ran are handed back; the three that waited go back to the queue unclaimed.
    assert [call for call, _ in runs.calls] == ["release"] * 2
    assert [type(e) for e in ended] == [type(None)] * 2 + [NotTaken] * 3
    assert all(runs.tasks.stored[c.task_id].state is TaskState.WAITING for c in commands[2:])


def renewed_now(lease_s: float = 5, renew_s: float = 1) -> LeaseClock:
    lease = LeaseClock(lease_s=lease_s, renew_s=renew_s)
    lease.renewed(time.monotonic())
    return lease


@dataclass
class WatchedLease(LeaseClock):
    """A lease that counts the runner's looks at it: each look is a round of a loop that
    decided, from what it saw, whether to act; evidence that it could have acted by now."""

    looks: int = 0

    def fenced(self, now: float) -> bool:
        self.looks += 1
        return super().fenced(now)


async def looked_at(lease: WatchedLease, times: int) -> None:
    """Wait until the runner has looked at `lease` `times` times."""
    await eventually(lambda: asyncio.sleep(0, lease.looks), lambda looks: looks >= times)


async def test_a_worker_that_lost_its_lease_stops_its_handler_and_writes_nothing() -> None:
    runs = FakeRuns()
    lease = renewed_now()
    runner = runner_on(runs, lease=lease)
    command = queued(runs, "hang")
    handling = asyncio.create_task(runner.handle(command, never_acked))
    await until_running(runner, command.task_id)
    # When no renewal was answered for the lease less one renewal
    lease.renewed_at = time.monotonic() - 4
    assert runner.fenced()
    watchdog = asyncio.create_task(runner.fence_forever(0.01))
    try:
        with pytest.raises(Fenced):
            await asyncio.wait_for(handling, 5)
    finally:
        watchdog.cancel()
    # Then the handler is stopped and no verb is called: the next run's janitor takes the task
    assert runs.calls == []
    assert runner.running == {}
    assert runner.abandoned == {command.task_id: "r1"}


async def test_once_its_lease_is_back_a_worker_gives_up_the_runs_it_stopped() -> None:
    runs = FakeRuns()
    lease = WatchedLease(lease_s=5, renew_s=1)
    given_up: list[tuple[str, str]] = []

    async def give_up(task_id: str, run_id: str) -> None:
        given_up.append((task_id, run_id))

    runner = runner_on(runs, lease=lease, give_up=give_up)
    runner.abandoned["t1"] = "r1"
    lease.renewed_at = time.monotonic() - 4  # lost: nothing is given up while it is
    watchdog = asyncio.create_task(runner.fence_forever(0.01))
    try:
        # A second look at the lost lease: the first round, which could have given up, is over
        await looked_at(lease, 2)
        assert given_up == []
        lease.renewed(time.monotonic())  # back
        await eventually(lambda: asyncio.sleep(0, runner.abandoned), lambda left: left == {})
    finally:
        watchdog.cancel()
    assert given_up == [("t1", "r1")]


async def test_a_handler_that_swallows_the_fence_still_writes_nothing() -> None:
    runs = FakeRuns()
    runner = runner_on(runs, lease=renewed_now())
    command = queued(runs, "stubborn")  # returns when stopped
    handling = asyncio.create_task(runner.handle(command, never_acked))
    await until_running(runner, command.task_id)
    runner.fence()
    with pytest.raises(Fenced):
        await asyncio.wait_for(handling, 5)
    assert runs.calls == []


async def test_a_worker_without_a_lease_claims_nothing_until_it_is_renewed() -> None:
    runs = FakeRuns()
    lease = WatchedLease(lease_s=5, renew_s=1)  # never renewed yet
    runner = runner_on(runs, lease=lease)
    command = queued(runs, "return")
    handling = asyncio.create_task(runner.handle(command, never_acked))
    # A second look before claiming: after the first it waited, where it could have claimed
    await looked_at(lease, 2)
    assert runs.calls == []
    assert runs.tasks.stored[command.task_id].state is TaskState.WAITING
    lease.renewed(time.monotonic())
    await asyncio.wait_for(handling, 5)
    assert runs.calls[-1] == ("complete", {"ok": True})


async def test_a_task_held_without_a_lease_is_taken_over_and_run_here() -> None:
    runs = FakeRuns()
    asked: list[tuple[str, bool]] = []
    command = queued(runs, "return")
    runs.held_elsewhere.add(command.task_id)  # by a worker whose lease expired

    async def take_over(task_id: str, ours_unrun: bool) -> bool:
        asked.append((task_id, ours_unrun))
        runs.held_elsewhere.discard(task_id)  # lost, released: claimable
        return True

    await runner_on(runs, take_over=take_over).handle(command, never_acked)
    assert asked == [(command.task_id, True)]
    assert runs.calls[-1] == ("complete", {"ok": True})


async def test_a_task_released_from_a_lost_worker_is_adopted_only_with_a_slot_free() -> None:
    runs = FakeRuns()
    runner = runner_on(runs, concurrency=1)
    first, second = queued(runs, "return"), queued(runs, "return")
    assert runner.adopt(first.task_id, "unit.t")
    await eventually(lambda: asyncio.sleep(0, runs.calls), lambda calls: len(calls) == 3)
    assert runs.calls[-1] == ("complete", {"ok": True})
    hanging = queued(runs, "hang")
    handling = asyncio.create_task(runner.handle(hanging, never_acked))
    await until_running(runner, hanging.task_id)
    assert not runner.adopt(second.task_id, "unit.t")  # no slot: the queue decides
    await runner.shutdown(grace_s=0)
    await handling
