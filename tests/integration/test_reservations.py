"""Reservations on the real broker and database: conflicting tasks never overlap, run in
submission order per resource, shared holders run together, and every end releases."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from services.worker.app import Worker
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import Phase, TaskState
from shared.records import StoredTask, new_task
from shared.registry import load_registry
from shared.reservations import Mode, reservations
from shared.settings import Settings
from shared.store import Store
from shared.submission import NewTask, Options, ScheduledTooFar, Submissions
from shared.tasktypes.demo import POWER_OFF
from tests.support import eventually
from tests.support.commands import commands_on
from tests.support.queues import left_every_queue

pytestmark = pytest.mark.integration


@pytest.fixture
async def submissions(settings: Settings, store: Store) -> AsyncIterator[Submissions]:
    """Submissions on the test's database and a real broker."""
    registry = load_registry(builtin_tasks=True)
    async with commands_on(settings, store) as commands:
        yield Submissions(store.tasks, store.idempotency, commands, registry, settings)


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[list[Worker]]:
    """Four workers on the test's queue."""
    started = [
        Worker(settings.model_copy(update={"worker_name": f"{settings.worker_name}-{n}"}))
        for n in range(4)
    ]
    for worker in started:
        await worker.start()
    yield started
    await asyncio.gather(*(asyncio.wait_for(w.stop(), timeout=60) for w in started))


def count(round_s: float = 0.01) -> dict[str, float]:
    return {"rounds": 1, "round_s": round_s}


async def all_final(store: Store, ids: list[str], timeout_s: float = 60) -> list[StoredTask]:
    async def probe() -> list[StoredTask]:
        return [t for i in ids if (t := await store.tasks.get(i)) is not None]

    return await eventually(
        probe, lambda ts: len(ts) == len(ids) and all(t.final for t in ts), timeout_s=timeout_s
    )


async def test_conflicting_tasks_on_four_workers_never_overlap_and_keep_submission_order(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    rng = random.Random(19)
    resources = [f"vm:web-{n:02d}" for n in range(10)]
    submitted: dict[str, list[str]] = defaultdict(list)
    ids = []
    for _ in range(200):
        resource = rng.choice(resources)
        task = await submissions.submit(
            "test.count",
            count(rng.choice((0.0, 0.01, 0.03))),
            owner="dev",
            options=Options(exclusive_resources=(resource,)),
        )
        submitted[resource].append(task.id)
        ids.append(task.id)
    tasks = {t.id: t for t in await all_final(store, ids, timeout_s=120)}
    assert {t.state for t in tasks.values()} == {TaskState.COMPLETED}
    for resource, order in submitted.items():
        runs = [tasks[i] for i in order]
        starts = [t.started_at for t in runs]
        assert all(s is not None for s in starts)
        # In submission order, and each starts only after the one before it ended.
        for before, after in itertools.pairwise(runs):
            assert before.finished_at is not None
            assert after.started_at is not None
            assert before.finished_at <= after.started_at, (resource, before.id, after.id)
    # No resource is left held once everything ended.
    await left_every_queue(store, resources)
    # Non-conflicting tasks did run at the same time, on several workers.
    assert len({t.worker.name for t in tasks.values() if t.worker}) > 1


async def test_shared_holders_run_together_and_an_exclusive_one_waits_for_them(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    shared = Options(shared_resources=("provider:ec2",))
    readers = [
        await submissions.submit("test.count", count(0.5), owner="dev", options=shared)
        for _ in range(3)
    ]
    writer = await submissions.submit(
        "test.count",
        count(0.01),
        owner="dev",
        options=Options(exclusive_resources=("provider:ec2",)),
    )
    assert writer.phase is Phase.BLOCKED
    assert writer.waiting_for is not None
    assert writer.waiting_for.holder == readers[0].id
    done = {t.id: t for t in await all_final(store, [*(r.id for r in readers), writer.id])}
    starts = [done[r.id].started_at for r in readers]
    ends = [done[r.id].finished_at for r in readers]
    assert all(s is not None for s in starts)
    assert all(e is not None for e in ends)
    # The three shared holders ran at once: each started before any ended.
    assert max(s for s in starts if s) < min(e for e in ends if e)
    writer_start = done[writer.id].started_at
    assert writer_start is not None
    assert writer_start >= max(e for e in ends if e)


async def test_a_blocked_task_says_what_it_waits_for_and_a_cancel_of_the_holder_gives_it_its_turn(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    first = await submissions.submit(
        "demo.vm_power_off", {"vm": "vm-web-01", "delay_s": 30}, owner="dev"
    )
    second = await submissions.submit(POWER_OFF, {"vm": "vm-web-01", "delay_s": 0}, owner="dev")
    # The task type derives the resource from the arguments; nobody named it.
    assert [r.resource for r in second.reservations] == ["vm:web-01"]
    assert second.state is TaskState.WAITING
    assert second.phase is Phase.BLOCKED
    assert second.waiting_for is not None
    assert (second.waiting_for.resource, second.waiting_for.holder) == ("vm:web-01", first.id)
    await eventually(
        lambda: store.tasks.get(first.id), lambda t: t is not None and t.state is TaskState.RUNNING
    )
    await workers[0].runs.cancel(first.id)
    ended = await eventually(
        lambda: store.tasks.get(second.id), lambda t: t is not None and t.final, timeout_s=30
    )
    assert ended is not None
    assert ended.state is TaskState.COMPLETED
    canceled = await store.tasks.get(first.id)
    assert canceled is not None
    assert canceled.state is TaskState.CANCELED
    await left_every_queue(store, ["vm:web-01"])


async def test_canceling_a_waiting_task_takes_it_out_of_the_queue(
    store: Store, submissions: Submissions
) -> None:
    hold = Options(exclusive_resources=("repo:a",))
    first = await submissions.submit("test.count", count(), owner="dev", options=hold)
    second = await submissions.submit("test.count", count(), owner="dev", options=hold)
    assert second.phase is Phase.BLOCKED
    canceled = await submissions.runs.cancel(second.id)
    assert canceled is not None
    assert canceled.state is TaskState.CANCELED
    # The first holds the resource by key (it found it free), so it is in no queue; the
    # second's place went with its cancel.
    assert await store.tasks.reservations.queue("repo:a") == []
    assert await store.tasks.holders(["repo:a"], besides=second.id) == {"repo:a": first.id}


async def test_a_scheduled_task_waits_for_its_time_and_a_cancel_ends_it(
    store: Store, submissions: Submissions, settings: Settings
) -> None:
    at = utcnow() + timedelta(hours=1)
    task = await submissions.submit("test.count", count(), owner="dev", options=Options(run_at=at))
    assert (task.state, task.phase) == (TaskState.WAITING, Phase.SCHEDULED)
    assert await submissions.runs.wake(task.id) is False  # not due yet
    stored = await store.tasks.get(task.id)
    assert stored is not None
    assert stored.run_at is not None
    assert abs((stored.run_at - at).total_seconds()) < 0.01
    canceled = await submissions.runs.cancel(task.id)
    assert canceled is not None
    assert canceled.state is TaskState.CANCELED
    assert canceled.dispatch_due_at is None
    with pytest.raises(ScheduledTooFar, match="30 days"):
        await submissions.submit(
            "test.count",
            count(),
            owner="dev",
            options=Options(delay_s=settings.max_schedule_ahead_s + 60),
        )


async def test_a_scheduled_task_runs_at_its_time_and_a_past_time_at_once(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    at = utcnow() + timedelta(seconds=2)
    later = await submissions.submit("test.count", count(), owner="dev", options=Options(run_at=at))
    past = await submissions.submit(
        "test.count", count(), owner="dev", options=Options(run_at=utcnow() - timedelta(days=1))
    )
    assert past.phase is Phase.QUEUED
    done = {t.id: t for t in await all_final(store, [later.id, past.id])}
    started = done[later.id].started_at
    assert started is not None
    assert abs((started - at).total_seconds()) <= 1.0
    assert done[past.id].state is TaskState.COMPLETED


async def test_rest_carries_resources_schedule_and_refuses_a_time_too_far_ahead(
    api: httpx.AsyncClient,
) -> None:
    at = utcnow() + timedelta(hours=2)
    first = await api.post(
        "/api/v1/tasks",
        json={
            "name": "test.count",
            "args": count(),
            "exclusive_resources": ["vm:web-01"],
            "shared_resources": ["provider:ec2"],
            "run_at": at.isoformat(),
        },
    )
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["state"], body["phase"]) == ("waiting", "scheduled")
    assert body["reservations"] == [
        {"resource": "provider:ec2", "mode": "shared"},
        {"resource": "vm:web-01", "mode": "exclusive"},
    ]
    assert body["run_at"] is not None
    far = await api.post(
        "/api/v1/tasks", json={"name": "test.count", "args": count(), "delay_s": 40 * 86400}
    )
    assert far.status_code == 422, far.text
    problem = far.json()
    assert problem["type"] == "urn:tasklight:problem:scheduled-too-far"
    assert problem["limit_s"] == 30 * 86400
    assert "30 days" in problem["detail"]
    # A delay too large to be a time at all is refused the same way, not a 500.
    huge = await api.post(
        "/api/v1/tasks", json={"name": "test.count", "args": count(), "delay_s": 1.33e306}
    )
    assert huge.status_code == 422, huge.text
    assert huge.json()["type"] == "urn:tasklight:problem:scheduled-too-far"
    bad = await api.post(
        "/api/v1/tasks",
        json={"name": "test.count", "args": count(), "exclusive_resources": ["no kind"]},
    )
    assert bad.status_code == 422
    assert "kind:name" in bad.json()["detail"]


async def test_a_high_priority_task_behind_a_thousand_normal_ones_starts_before_the_tenth(
    settings: Settings, store: Store, submissions: Submissions
) -> None:
    normal: list[str] = []
    for _ in range(10):
        batch = [NewTask("test.noop", {}) for _ in range(100)]
        normal += [t.id for t in await submissions.submit_many(batch, owner="dev")]
    high = await submissions.submit("test.noop", {}, owner="dev", options=Options(priority=1))
    one = Worker(settings.model_copy(update={"worker_concurrency": 1}))
    await one.start()
    try:
        done = await eventually(
            lambda: store.tasks.get(high.id), lambda t: t is not None and t.final, timeout_s=60
        )
    finally:
        await asyncio.wait_for(one.stop(), timeout=60)
    assert done is not None
    assert done.started_at is not None
    before = await store.tasks.collection.count_documents(
        {"_id": {"$in": normal}, "started_at": {"$lt": done.started_at}}
    )
    assert before < 9, f"{before} normal tasks started before the high-priority one"


async def test_queue_changes_sent_together_keep_their_order_and_each_sees_its_own(
    store: Store, settings: Settings
) -> None:
    # Given the queue changes of many tasks at once, in one process and in a second one (whose
    # upserts of the same new queues collide with the first's)
    other = Store(store.client, settings.database)
    resources = [f"vm:group-{n}" for n in range(5)]
    tasks = [f"task-{n}" for n in range(40)]
    at = utcnow()
    mine = [
        store.tasks.reservations.enter(resources[n % 5], task, Mode.EXCLUSIVE, at)
        for n, task in enumerate(tasks[:20])
    ]
    theirs = [
        other.tasks.reservations.enter(resources[n % 5], task, Mode.EXCLUSIVE, at)
        for n, task in enumerate(tasks[20:])
    ]
    seen = await asyncio.gather(*mine, *theirs)
    # Then each entered once, saw itself in its queue, and one process's tasks keep its order
    for task, queue in zip(tasks, seen, strict=True):
        assert task in [e.task for e in queue]
    for n, resource in enumerate(resources):
        queued = [e.task for e in await store.tasks.reservations.queue(resource)]
        assert sorted(queued) == sorted(tasks[n::5])
        assert [t for t in queued if t in tasks[:20]] == tasks[:20][n::5]
    # And entering again changes nothing; leaving hands the resource to the next
    again = await store.tasks.reservations.enter(resources[0], tasks[0], Mode.EXCLUSIVE, at)
    assert [e.task for e in again].count(tasks[0]) == 1
    first, second = [e.task for e in again][:2]
    after = await store.tasks.reservations.leave(resources[0], first)
    assert after[0].task == second
    assert first not in [e.task for e in after]


async def test_tasks_that_meet_no_other_take_their_resources_by_key_and_leave_no_queue(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    # What a reservation costs when nothing conflicts: the insert takes the resources, the end
    # gives them up; no resource's queue is written.
    slow = await submissions.submit(
        "test.count",
        count(0.5),
        owner="dev",
        options=Options(exclusive_resources=("vm:key-slow", "disk:key-slow")),
    )
    held = await eventually(
        lambda: store.tasks.collection.find_one({"_id": slow.id}),
        lambda doc: doc is not None and doc["state"] == TaskState.RUNNING.value,
    )
    assert held is not None
    assert held["holds"] == ["disk:key-slow", "vm:key-slow"]
    ids = [slow.id]
    for n in range(20):
        task = await submissions.submit(
            "test.count",
            count(),
            owner="dev",
            options=Options(exclusive_resources=(f"vm:key-{n}",)),
        )
        assert task.phase is Phase.QUEUED
        ids.append(task.id)
    tasks = await all_final(store, ids)
    assert {t.state for t in tasks} == {TaskState.COMPLETED}
    assert await store.tasks.reservations.collection.count_documents({}) == 0
    assert await store.tasks.collection.count_documents({"holds": {"$exists": True}}) == 0


def _ran_one_after_the_other(first: StoredTask, then: StoredTask) -> None:
    assert first.finished_at is not None
    assert then.started_at is not None
    assert first.finished_at <= then.started_at


async def test_a_task_that_took_its_resource_by_key_queues_behind_tasks_already_queued(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    # A shared holder is in the resource's queue and holds no key; an exclusive task then finds
    # the key free, but the queue not empty: it gives its key up and waits for the holder.
    reader = await submissions.submit(
        "test.count", count(0.5), owner="dev", options=Options(shared_resources=("repo:q",))
    )
    writer = await submissions.submit(
        "test.count", count(), owner="dev", options=Options(exclusive_resources=("repo:q",))
    )
    assert writer.phase is Phase.BLOCKED
    assert writer.waiting_for is not None
    assert writer.waiting_for.holder == reader.id
    doc = await store.tasks.collection.find_one({"_id": writer.id})
    assert doc is not None
    assert "holds" not in doc
    assert "dispatch_due_at" not in doc
    done = {t.id: t for t in await all_final(store, [reader.id, writer.id])}
    _ran_one_after_the_other(done[reader.id], done[writer.id])
    await left_every_queue(store, ["repo:q"])


async def test_a_turn_that_enters_another_queue_looks_for_its_holder_by_key(
    settings: Settings, store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    # The writer waits in the queue of repo:a behind a shared reader, so it is in no queue of
    # repo:b yet; meanwhile another api replica's task takes repo:b by key (its queue is
    # empty). When the reader ends, the writer's turn at repo:a comes from the task it waited
    # for, and it enters repo:b's queue first in line: only a look finds the key holder there.
    reader = await submissions.submit(
        "test.count", count(0.5), owner="dev", options=Options(shared_resources=("repo:a",))
    )
    writer = await submissions.submit(
        "test.count",
        count(),
        owner="dev",
        options=Options(exclusive_resources=("repo:a", "repo:b")),
    )
    assert writer.waiting_for is not None
    assert writer.waiting_for.holder == reader.id
    async with commands_on(settings, store) as commands:
        replica = Submissions(
            store.tasks, store.idempotency, commands, load_registry(builtin_tasks=True), settings
        )
        keeper = await replica.submit(
            "test.count", count(2.0), owner="dev", options=Options(exclusive_resources=("repo:b",))
        )
        assert keeper.phase is Phase.QUEUED
        keeper_doc = await store.tasks.collection.find_one({"_id": keeper.id})
        assert keeper_doc is not None
        assert keeper_doc["holds"] == ["repo:b"]
        done = {t.id: t for t in await all_final(store, [reader.id, writer.id, keeper.id])}
    _ran_one_after_the_other(done[reader.id], done[writer.id])
    _ran_one_after_the_other(done[keeper.id], done[writer.id])
    await left_every_queue(store, ["repo:a", "repo:b"])


@pytest.mark.parametrize("per_task", [1, 2], ids=["one-resource", "two-resources"])
async def test_submissions_racing_for_resources_never_run_conflicting_tasks_together(
    store: Store, submissions: Submissions, workers: list[Worker], per_task: int
) -> None:
    # Submissions at the same time meet each other half-way: some take a resource by key while
    # others queue for it, and one holder ends while another task looks. With two resources a
    # task, a turn also enters the next queue, and looks for holders by key again.
    rng = random.Random(7)
    resources = ["vm:race-a", "vm:race-b", "vm:race-c"]
    ids: list[str] = []
    takes: dict[str, list[tuple[str, Mode]]] = defaultdict(list)

    async def one() -> None:
        names = tuple(rng.sample(resources, per_task))
        mode = Mode.SHARED if rng.random() < 0.25 else Mode.EXCLUSIVE
        options = (
            Options(shared_resources=names)
            if mode is Mode.SHARED
            else Options(exclusive_resources=names)
        )
        task = await submissions.submit(
            "test.count", count(rng.choice((0.0, 0.02))), owner="dev", options=options
        )
        for resource in names:
            takes[resource].append((task.id, mode))
        ids.append(task.id)

    for _ in range(6):
        await asyncio.gather(*(one() for _ in range(25)))
    tasks = {t.id: t for t in await all_final(store, ids, timeout_s=120)}
    assert {t.state for t in tasks.values()} == {TaskState.COMPLETED}
    for resource, taken in takes.items():
        for (a, mode_a), (b, mode_b) in itertools.combinations(taken, 2):
            if Mode.EXCLUSIVE not in (mode_a, mode_b):
                continue
            first, second = sorted((tasks[a], tasks[b]), key=lambda t: t.started_at or utcnow())
            assert first.finished_at is not None
            assert second.started_at is not None
            assert first.finished_at <= second.started_at, (resource, first.id, second.id)
    await left_every_queue(store, resources)
    assert await store.tasks.collection.count_documents({"holds": {"$exists": True}}) == 0


def _stored_by_a_submitter_that_died(name: str, resource: str) -> StoredTask:
    """A task as a submitter that died after storing it holding `resource` by key (before it
    looked at the resource's queue and published the command) left it."""
    return new_task(
        task_id=new_task_id(),
        name=name,
        args=count(),
        owner="dev",
        at=utcnow(),
        reservations=reservations(exclusive=[resource]),
    )


async def _fall_due(store: Store, task_id: str) -> None:
    """The outbox mark of `task_id` falls due now (its grace passed)."""
    await store.tasks.collection.update_one(
        {"_id": task_id}, {"$set": {"dispatch_due_at": utcnow() - timedelta(seconds=1)}}
    )


async def test_the_relay_of_a_task_holding_a_resource_by_key_first_looks_at_its_queue(
    store: Store, submissions: Submissions, workers: list[Worker]
) -> None:
    # A shared holder runs from the queue; a task stored holding the resource by key (its
    # submitter died before looking) must not run beside it when the relay publishes it.
    reader = await submissions.submit(
        "test.count", count(0.5), owner="dev", options=Options(shared_resources=("repo:r",))
    )
    await eventually(
        lambda: store.tasks.get(reader.id),
        lambda t: t is not None and t.state is TaskState.RUNNING,
    )
    orphan = _stored_by_a_submitter_that_died("test.count", "repo:r")
    await store.tasks.insert_holding(orphan, dispatch_due_at=utcnow() + timedelta(minutes=5))
    await _fall_due(store, orphan.id)
    await workers[0].janitor.relay()
    blocked = await store.tasks.get(orphan.id)
    assert blocked is not None
    assert blocked.phase is Phase.BLOCKED
    assert blocked.waiting_for is not None
    assert blocked.waiting_for.holder == reader.id
    done = {t.id: t for t in await all_final(store, [reader.id, orphan.id])}
    _ran_one_after_the_other(done[reader.id], done[orphan.id])

    # One that others already wait for (they saw its key) keeps its place ahead of them.
    first = _stored_by_a_submitter_that_died("test.count", "repo:s")
    await store.tasks.insert_holding(first, dispatch_due_at=utcnow() + timedelta(minutes=5))
    behind = await submissions.submit(
        "test.count", count(), owner="dev", options=Options(exclusive_resources=("repo:s",))
    )
    assert behind.phase is Phase.BLOCKED
    assert behind.waiting_for is not None
    assert behind.waiting_for.holder == first.id
    await _fall_due(store, first.id)
    await workers[0].janitor.relay()
    done = {t.id: t for t in await all_final(store, [first.id, behind.id])}
    assert {t.state for t in done.values()} == {TaskState.COMPLETED}
    _ran_one_after_the_other(done[first.id], done[behind.id])
