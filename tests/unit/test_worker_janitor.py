"""The janitor's rules: which stranded commands to relay, which lost tasks run again."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, Literal, cast

import pytest
from pydantic import BaseModel

from services.worker.janitor import EXPIRY_MARGIN_S, Janitor, relays, requeues_when_lost
from shared.clock import utcnow
from shared.commands import Commands
from shared.lifecycle import Phase, TaskState
from shared.records import StoredTask
from shared.registry import Registry, TaskType
from shared.runs import Runs
from shared.settings import Settings
from shared.store import DueDispatch, Store
from shared.store.errors import DatabaseTimeout, DatabaseUnreachable
from shared.task import Attempt
from tests.support import stored_task


class Args(BaseModel):
    pass


async def handler(args: Args, ctx: object) -> None:
    """Nothing."""


@pytest.mark.parametrize(
    ("state", "phase", "relayed"),
    [
        (TaskState.WAITING, Phase.QUEUED, True),  # stored, never confirmed
        (TaskState.RUNNING, Phase.RELEASED, True),  # released, its requeue never confirmed
        (TaskState.RUNNING, Phase.HELD, False),  # delivered: a stale mark
        (TaskState.CANCELING, Phase.RELEASED, False),  # the cancel ends it; no run needed
        (TaskState.RUNNING, Phase.AWAITING_CHILDREN, False),
        (TaskState.COMPLETED, Phase.ENDED, False),
    ],
)
def test_only_a_task_that_still_needs_its_command_is_relayed(
    state: TaskState, phase: Phase, relayed: bool
) -> None:
    assert relays(DueDispatch("t1", "unit.t", state, phase)) is relayed


def registry(on_worker_lost: Literal["requeue", "fail"], max_runs: int = 3) -> Registry:
    found = Registry()
    found.add(
        TaskType("unit.t", "T", "", Args, handler, on_worker_lost=on_worker_lost, max_runs=max_runs)
    )
    return found


def lost(times: int) -> list[Attempt]:
    return [Attempt(outcome="worker_lost") for _ in range(times)]


def test_a_lost_task_runs_again_only_if_its_type_says_so_and_runs_are_left() -> None:
    task = stored_task(name="unit.t", state=TaskState.RUNNING)
    assert requeues_when_lost(task, registry("requeue"))
    assert not requeues_when_lost(task, registry("fail"))
    twice = task.model_copy(update={"attempts": lost(2)})
    assert not requeues_when_lost(twice, registry("requeue", max_runs=3))
    assert requeues_when_lost(twice, registry("requeue", max_runs=4))
    # Retries are not losses: they do not use up the runs a loss may take.
    retried = task.model_copy(update={"attempts": [Attempt(outcome="retry")] * 5})
    assert requeues_when_lost(retried, registry("requeue"))


def test_a_lost_task_of_a_type_this_worker_does_not_know_fails() -> None:
    assert not requeues_when_lost(stored_task(name="unit.unknown"), registry("requeue"))


def janitor(ttl_s: float) -> Janitor:
    settings = Settings(lease_s=ttl_s)
    return Janitor(cast(Store, None), cast(Runs, None), cast(Commands, None), Registry(), settings)


def test_liveness_is_judged_only_after_a_whole_lease_of_database_answers() -> None:
    watcher = janitor(ttl_s=30)
    # Just started: the heartbeats it reads may predate an outage it did not see.
    assert not watcher.may_judge_liveness()
    watcher.reachable_since = time.monotonic() - 31
    assert watcher.may_judge_liveness()
    # An outage: every live worker's heartbeat ages meanwhile, through no fault of its own.
    watcher.database_answered(False)
    assert not watcher.may_judge_liveness()
    watcher.database_answered(True)
    assert not watcher.may_judge_liveness()
    assert watcher.reachable_since is not None
    watcher.reachable_since -= 31
    watcher.database_answered(True)  # answers keep the time it came back
    assert watcher.may_judge_liveness()


def test_the_janitor_looks_again_just_after_the_earliest_lease_it_saw_ends() -> None:
    watcher = janitor(ttl_s=5)  # a sweep a second by default
    now = utcnow()
    assert watcher.pause_s(now) == watcher.settings.janitor_interval_s
    watcher.next_expiry = now + timedelta(seconds=0.3)  # a worker that stopped renewing
    assert watcher.pause_s(now) == pytest.approx(0.3 + EXPIRY_MARGIN_S)
    watcher.next_expiry = now + timedelta(seconds=4)  # leases renewed as they should be
    assert watcher.pause_s(now) == watcher.settings.janitor_interval_s
    watcher.next_expiry = now - timedelta(seconds=1)  # ended while the sweep went on
    assert watcher.pause_s(now) == EXPIRY_MARGIN_S


class HeldTasks:
    """The store's `tasks` as far as `reclaim_forgotten` reads them: what is held by a name."""

    def __init__(self, held: list[StoredTask]) -> None:
        self.held = held
        self.asked: list[str] = []

    async def held_by(self, worker: str, limit: int = 100) -> list[StoredTask]:
        self.asked.append(worker)
        return self.held


class LosingRuns:
    """The verbs as far as the janitor calls them here: which tasks were released as lost."""

    def __init__(self) -> None:
        self.lost: list[str] = []

    async def lose(self, task: StoredTask, *, requeue: bool) -> TaskState | None:
        self.lost.append(task.id)
        return TaskState.FAILED


async def test_a_run_of_this_worker_that_its_runner_no_longer_has_is_released() -> None:
    # Given three tasks held under this worker's name, of which its runner handles only one
    forgotten, handled, fenced = (stored_task(state=TaskState.RUNNING) for _ in range(3))
    tasks, runs = HeldTasks([forgotten, handled, fenced]), LosingRuns()
    store = type("FakeStore", (), {"tasks": tasks})()
    settings = Settings(worker_name="w1")
    keeper = Janitor(
        cast(Store, store), cast(Runs, runs), cast(Commands, None), Registry(), settings
    )
    keeper.in_hand = {handled.id, fenced.id}.__contains__

    # When the janitor looks for runs its worker forgot (a handle cancelled under it)
    await keeper.reclaim_forgotten()

    # Then only the forgotten one is released, and only this worker's runs were looked at
    assert runs.lost == [forgotten.id]
    assert tasks.asked == ["w1"]


async def test_without_a_runner_to_ask_nothing_is_released() -> None:
    tasks, runs = HeldTasks([stored_task(state=TaskState.RUNNING)]), LosingRuns()
    store = type("FakeStore", (), {"tasks": tasks})()
    keeper = Janitor(
        cast(Store, store), cast(Runs, runs), cast(Commands, None), Registry(), Settings()
    )
    await keeper.reclaim_forgotten()
    assert runs.lost == []


async def test_a_failing_repair_holds_up_no_other_and_only_an_unreachable_database_stops_judging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watcher = janitor(ttl_s=5)
    done: list[str] = []
    failure: list[Exception] = [RuntimeError("the broker refused the command")]

    async def failing() -> None:
        raise failure[0]

    def recorder(name: str) -> Callable[[], Awaitable[None]]:
        async def repair() -> None:
            done.append(name)

        return repair

    names = ["reclaim_forgotten", "finish_orphaned_parents", "settle_unanswered"]
    names += ["settle_reservations", "relay"]
    for name in names:
        monkeypatch.setattr(watcher, name, recorder(name))
    monkeypatch.setattr(watcher, "reap_missing_workers", failing)
    # A repair that fails for another reason than the database: the rest still run, and the
    # database counts as having answered.
    assert await watcher.sweep() is True
    assert sorted(done) == sorted(names)
    # One that fails for want of the database: the rest still run; liveness is not judged.
    failure[0] = DatabaseUnreachable("connection closed")
    done.clear()
    assert await watcher.sweep() is False
    assert sorted(done) == sorted(names)
    failure[0] = DatabaseTimeout("timed out")
    assert await watcher.sweep() is False


async def test_a_lost_workers_task_is_taken_a_renewal_after_its_claim_not_a_lease_after() -> None:
    # Given a janitor that may judge leases, on a store whose calls it records
    asked: dict[str, Any] = {}

    class Workers:
        async def live(self, now: datetime) -> dict[str, datetime]:
            asked["now"] = now
            return {}

        async def mark_missing(self, now: datetime, cutoff: datetime) -> int:
            return 0

    class Tasks:
        async def held_without_lease(
            self, live: Iterable[str], claimed_before: datetime
        ) -> list[StoredTask]:
            asked["claimed_before"] = claimed_before
            return []

    store = SimpleNamespace(workers=Workers(), tasks=Tasks())
    settings = Settings(lease_s=5, lease_renew_s=1)
    watcher = Janitor(
        cast(Store, store), cast(Runs, None), cast(Commands, None), Registry(), settings
    )
    watcher.reachable_since = time.monotonic() - 10
    # When it looks for lost workers' tasks
    await watcher.reap_missing_workers()
    # Then it takes those claimed up to a renewal before its look at who is live: a killed
    # worker's task claimed just before the kill goes back as its lease ends, not a lease later
    margin = asked["now"] - asked["claimed_before"]
    assert margin == timedelta(seconds=settings.lease_renew_s)
