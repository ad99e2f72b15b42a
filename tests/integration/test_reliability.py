"""Nothing lost, nothing stuck: retries, lost workers, relay, dead letters, hand-back, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aio_pika
import httpx
import pytest

from services.worker.app import Worker
from shared import metrics
from shared.clock import utcnow
from shared.lifecycle import Phase, TaskState
from shared.messages import RunTask
from shared.records import Run
from shared.settings import Settings
from shared.store import Change, Store
from shared.store.tasks import document
from shared.submission import submission_digest
from shared.task import WorkerRef
from shared.topology import RUN_KEY, Topology
from tests.support import admin_headers, eventually, stored_task
from tests.support.rest import read, submit, until_state

pytestmark = pytest.mark.integration


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """Settings whose timeouts are short enough for a test."""
    return settings.model_copy(
        update={
            "lease_s": 1.5,
            "janitor_interval_s": 0.3,
            "outbox_grace_s": 0.5,
            "cancel_grace_s": 0.5,
            "lease_renew_s": 0.3,
        }
    )


@pytest.fixture
async def quick_worker(quick: Settings) -> AsyncIterator[Worker]:
    running = Worker(quick)
    await running.start()
    yield running
    await running.stop(grace_s=0)


async def store_orphan(store: Store, name: str, args: dict[str, Any], **fields: Any) -> str:
    """A task left `running` by a worker that died long ago (no heartbeat for a minute)."""
    task = stored_task(name=name, args=args)
    await store.tasks.insert(task)
    long_ago = utcnow() - timedelta(minutes=1)
    claimed = await store.tasks.apply(
        task.id,
        Change(
            sources=frozenset({TaskState.WAITING}),
            phases=frozenset({Phase.QUEUED}),
            target=TaskState.RUNNING,
            phase=Phase.HELD,
            fields={
                "worker": WorkerRef(name="dead-worker", last_heartbeat=long_ago),
                "run": Run(id="dead-run", worker="dead-worker"),
                "runs": 1,
                **fields,
            },
        ),
    )
    assert claimed is not None
    return task.id


async def test_a_retryable_failure_is_retried_after_a_broker_delay_until_it_succeeds(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "test.flaky", failures=2)
    task = await until_state(api, task_id, ("completed", "failed"))
    assert task["state"] == "completed"
    assert task["result"] == {"attempts": 3}
    retries = [a for a in task["attempts"] if a["outcome"] == "retry"]
    assert len(retries) == 2
    # The first retry waits 0.5 to 1 s (base 1 s, upper half jittered), in a broker delay queue.
    first_delay = retries[0]["retry_in_s"]
    assert 0.5 <= first_delay <= 1.0
    assert task["runs"] == 3


async def test_retries_stop_at_the_types_limit_and_the_task_fails_saying_so(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    task_id = await submit(api, "test.flaky", failures=50)
    task = await until_state(api, task_id, ("completed", "failed"))
    assert task["state"] == "failed"
    assert task["error"]["type"] == "retries_exhausted"
    assert "4 attempts" in task["error"]["message"]


async def test_a_requeueable_task_of_a_missing_worker_runs_again_elsewhere(
    api: httpx.AsyncClient, quick_worker: Worker, store: Store
) -> None:
    task_id = await store_orphan(store, "test.count", {"rounds": 1, "round_s": 0})
    task = await until_state(api, task_id, ("completed", "failed"))
    assert task["state"] == "completed"
    [lost] = task["attempts"]
    assert lost["outcome"] == "worker_lost"
    assert lost["worker"] == "dead-worker"
    assert task["worker"]["name"] == quick_worker.settings.worker_name


async def test_a_task_of_a_missing_worker_that_must_not_rerun_fails_saying_why(
    api: httpx.AsyncClient, quick_worker: Worker, store: Store
) -> None:
    task_id = await store_orphan(store, "test.fail", {"after_s": 0})
    task = await until_state(api, task_id, ("completed", "failed"))
    assert task["error"] == {"type": "worker_lost", "message": "worker dead-worker went missing"}
    assert task["worker"]["missing"] is True


async def test_a_worker_that_stops_heartbeating_is_listed_as_missing(
    api: httpx.AsyncClient, quick_worker: Worker, store: Store
) -> None:
    await store.workers.collection.insert_one(
        {"_id": "silent", "last_heartbeat": utcnow() - timedelta(minutes=5), "missing": False}
    )
    admin = await admin_headers(store)  # a user sees only the workers running their tasks
    workers = await eventually(
        lambda: api.get("/api/v1/workers", headers=admin),
        lambda r: any(w["name"] == "silent" and w["missing"] for w in r.json()),
    )
    [me] = [w for w in workers.json() if w["name"] == quick_worker.settings.worker_name]
    assert me["missing"] is False


async def test_a_stored_task_whose_publish_never_happened_is_relayed_and_runs(
    api: httpx.AsyncClient, quick_worker: Worker, store: Store
) -> None:
    # As if the API died between storing the task and publishing its command.
    stored = stored_task(name="test.count", args={"rounds": 1, "round_s": 0})
    await store.tasks.insert(stored, dispatch_due_at=utcnow())
    task_id = stored.id
    task = await until_state(api, task_id)
    assert task["state"] == "completed"
    # Marks are cleared in batches, a little after the broker confirmed the commands.
    marked = {"dispatch_due_at": {"$exists": True}}
    assert (
        await eventually(lambda: store.tasks.collection.count_documents(marked), lambda n: n == 0)
        == 0
    )


async def test_an_undecodable_command_is_dead_lettered_its_task_fails_and_the_queue_moves_on(
    api: httpx.AsyncClient, worker: Worker, settings: Settings, store: Store
) -> None:
    stored = stored_task(name="test.count")
    await store.tasks.insert(stored)
    task_id = stored.id
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(Topology(settings.namespace).tasks_exchange)
        await exchange.publish(
            aio_pika.Message(b"\xff not json", message_id=task_id), routing_key=RUN_KEY
        )
    failed = await until_state(api, task_id)
    assert failed["state"] == "failed"
    assert failed["error"]["type"] == "dead_lettered"
    assert failed["started_at"] is None
    after = await submit(api, "test.count", rounds=1, round_s=0)
    assert (await until_state(api, after))["state"] == "completed"


async def test_a_dead_lettered_command_whose_task_cannot_be_recorded_is_parked_not_looped(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # Two task documents the database refuses to fail the usual way: their dead-lettered
    # commands must be tried a bounded number of times, then parked and counted, while the
    # other dead letters are still handled. Parking fails the first all the same (its history
    # is not an array, which only the usual write's history entry reads); the second refuses
    # even that (its version is not a number), and stays as it was, which the log says.
    topology = Topology(settings.namespace)
    odd_history = stored_task(name="test.count")
    await store.tasks.collection.insert_one({**document(odd_history), "history": "not an array"})
    odd_version = stored_task(name="test.count")
    await store.tasks.collection.insert_one({**document(odd_version), "version": "not a number"})
    healthy = stored_task(name="test.count")
    await store.tasks.insert(healthy)
    parked_before = metrics.sample(metrics.WORKER_REGISTRY, "tasklight_commands_parked_total")
    dead_settings = settings.model_copy(
        update={"dead_letter_attempts": 3, "dead_letter_backoff_s": 0.05}
    )
    worker = Worker(dead_settings)
    await worker.start()
    try:
        connection = await aio_pika.connect(settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.get_exchange(topology.dead_exchange)
            for task in (odd_history, odd_version, healthy):
                body = RunTask(task_id=task.id, name=task.name).model_dump_json().encode()
                await dead.publish(aio_pika.Message(body, message_id=task.id), routing_key="")

            async def parked() -> int:
                queue = await channel.declare_queue(topology.parked_queue, passive=True)
                return queue.declaration_result.message_count or 0

            assert await eventually(parked, lambda n: n >= 2) == 2
            queue = await channel.declare_queue(topology.parked_queue, passive=True)
            ids = set()
            for _ in range(2):
                message = await queue.get(timeout=5)
                ids.add(message.message_id)
                assert "x-tasklight-parked-because" in (message.headers or {})
                await message.ack()
            assert ids == {odd_history.id, odd_version.id}
        failed = await eventually(
            lambda: store.tasks.get(healthy.id), lambda t: t is not None and t.final
        )
        assert failed is not None
        assert failed.state is TaskState.FAILED
    finally:
        await worker.stop()
    parked_after = metrics.sample(metrics.WORKER_REGISTRY, "tasklight_commands_parked_total")
    assert parked_after == parked_before + 2
    # Neither document can be read as a task any more: they are looked at as stored.
    ended = await store.tasks.collection.find_one({"_id": odd_history.id})
    assert ended is not None
    assert (ended["state"], ended["phase"]) == ("failed", "ended")
    assert ended["finished_at"] is not None
    assert ended["error"]["type"] == "dead_lettered"
    assert "parked" in ended["error"]["message"]
    assert ended["version"] == odd_history.version + 1
    assert ended["history"] == "not an array"
    unchanged = await store.tasks.collection.find_one({"_id": odd_version.id})
    assert unchanged is not None
    assert (unchanged["state"], unchanged["phase"]) == ("waiting", "queued")
    assert "error" not in unchanged or unchanged["error"] is None
    assert any(
        odd_version.id in r.getMessage() and "could not be failed either" in r.getMessage()
        for r in caplog.records
    )


async def test_a_stopping_worker_hands_a_running_task_back_and_another_finishes_it(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    first = Worker(settings.model_copy(update={"worker_name": "first"}))
    await first.start()
    task_id = await submit(api, "test.count", rounds=8, round_s=0.1)
    await eventually(
        lambda: read(api, task_id),
        lambda t: bool(t["progress_reports"]) and t["progress_reports"][0]["done"] >= 1,
    )
    await first.stop(grace_s=0.1)
    handed = await read(api, task_id)
    assert handed["state"] == "running"
    assert [a["outcome"] for a in handed["attempts"]] == ["hand_back"]
    second = Worker(settings.model_copy(update={"worker_name": "second"}))
    await second.start()
    try:
        task = await until_state(api, task_id)
    finally:
        await second.stop(grace_s=0)
    assert task["state"] == "completed"
    assert task["worker"]["name"] == "second"


async def test_a_task_handed_back_on_shutdown_is_started_at_once_by_a_running_worker(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    """Handed back means queued again: the other worker starts it within a couple of seconds,
    not after the janitor's worker TTL (30 s by default, which these settings keep)."""
    workers = {
        name: Worker(settings.model_copy(update={"worker_name": name})) for name in ("one", "two")
    }
    for running in workers.values():
        await running.start()
    try:
        task_id = await submit(api, "test.count", rounds=100, round_s=0.1)
        first = await eventually(
            lambda: read(api, task_id),
            lambda t: t["state"] == "running" and bool(t["progress_reports"]),
        )
        holder = first["worker"]["name"]
        (other,) = set(workers) - {holder}
        await workers.pop(holder).stop(grace_s=0.1)
        handed = await read(api, task_id)
        assert [a["outcome"] for a in handed["attempts"]] == ["hand_back"]
        taken = await eventually(
            lambda: read(api, task_id),
            lambda t: t["runs"] == 2 and t["worker"]["name"] == other,
            timeout_s=3,
        )
        assert taken["state"] == "running"
    finally:
        for running in workers.values():
            await running.stop(grace_s=0)


async def test_a_stopping_worker_lets_a_short_task_finish_within_the_grace_time(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    running = Worker(settings)
    await running.start()
    task_id = await submit(api, "test.count", rounds=3, round_s=0.1)
    await until_state(api, task_id, ("running",))
    await running.stop(grace_s=5)
    task = await read(api, task_id)
    assert task["state"] == "completed"
    assert task["attempts"] == []


async def test_a_handler_that_never_reaches_a_checkpoint_is_ended_after_the_grace_time(
    api: httpx.AsyncClient, quick_worker: Worker
) -> None:
    # One long round: the checkpoint between rounds is not reached for a minute.
    task_id = await submit(api, "test.count", rounds=1, round_s=60)
    await until_state(api, task_id, ("running",))
    await api.post(f"/api/v1/tasks/{task_id}/cancel")
    task = await eventually(
        lambda: read(api, task_id), lambda t: t["state"] == "canceled", timeout_s=5
    )
    assert "grace" in task["error"]["message"]


async def test_canceling_a_parent_cancels_its_children_and_the_parent_ends_canceled(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    parent_id = await submit(api, "test.spawn", children=3, rounds=40, round_s=0.1)
    parent = await eventually(lambda: read(api, parent_id), lambda t: len(t["child_tasks"]) == 3)
    await api.post(f"/api/v1/tasks/{parent_id}/cancel")
    parent = await until_state(api, parent_id)
    assert parent["state"] == "canceled"
    for href in parent["child_tasks"]:
        child = (await api.get(href)).json()
        assert child["state"] == "canceled"


async def test_a_cancel_racing_a_completion_has_exactly_one_winner(
    api: httpx.AsyncClient, worker: Worker, store: Store
) -> None:
    ids = [await submit(api, "test.count", rounds=2, round_s=0.01) for _ in range(20)]
    for i, task_id in enumerate(ids):
        await asyncio.sleep(0.003 * (i % 7))
        response = await api.post(f"/api/v1/tasks/{task_id}/cancel")
        assert response.status_code in (202, 409)
    for task_id in ids:
        task = await until_state(api, task_id)
        events = await store.tasks.history(task_id)
        finals = [e for e in events if e.target in ("completed", "failed", "canceled")]
        assert len(finals) == 1
        assert finals[0].target == task["state"]
        assert task["state"] in ("completed", "canceled")


async def test_the_same_idempotency_key_and_body_return_the_same_task(
    api: httpx.AsyncClient, store: Store
) -> None:
    body = {"name": "test.count", "args": {"rounds": 1}}
    headers = {"Idempotency-Key": "order-42"}
    first = await api.post("/api/v1/tasks", json=body, headers=headers)
    again = await api.post("/api/v1/tasks", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    other = await api.post("/api/v1/tasks", json={**body, "args": {"rounds": 2}}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == "urn:tasklight:problem:idempotency-key-reused"
    assert await store.tasks.collection.count_documents({}) == 1


async def test_a_duplicate_while_the_first_request_is_in_flight_is_409(
    api: httpx.AsyncClient, store: Store
) -> None:
    body = {"name": "test.count", "args": {}}
    # Concurrent duplicates: one wins; the other is the same task or a 409, never a second task.
    answers = await asyncio.gather(
        *[api.post("/api/v1/tasks", json=body, headers={"Idempotency-Key": "k"}) for _ in range(5)]
    )
    assert {a.status_code for a in answers} <= {202, 409}
    assert len({a.json()["id"] for a in answers if a.status_code == 202}) == 1
    assert await store.tasks.collection.count_documents({}) == 1
    # Deterministically: a key whose first request (same body) has not finished yet.
    await store.idempotency.collection.insert_one(
        {
            "_id": {"owner": "dev", "key": "in-flight"},
            "digest": submission_digest("test.count", {}, None, None),
            "task_id": None,
            "created_at": utcnow(),
        }
    )
    busy = await api.post("/api/v1/tasks", json=body, headers={"Idempotency-Key": "in-flight"})
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"


async def test_finished_tasks_expire_by_ttl_and_can_be_purged(
    api: httpx.AsyncClient, worker: Worker, store: Store, settings: Settings
) -> None:
    indexes = await store.tasks.collection.index_information()
    assert indexes["finished_at_1"]["expireAfterSeconds"] == settings.retention_s
    done = await submit(api, "test.count", rounds=0)
    await until_state(api, done)
    pending = await submit(api, "test.count", rounds=100, round_s=0.1)
    later = (utcnow() + timedelta(seconds=5)).isoformat()
    refused = await api.delete(
        "/api/v1/tasks", params={"group": "pending", "finished_before": later}
    )
    assert refused.status_code == 422
    purged = await api.delete("/api/v1/tasks", params={"finished_before": later})
    assert purged.json() == {"deleted": 1}
    assert (await api.get(f"/api/v1/tasks/{done}")).status_code == 404
    assert (await api.get(f"/api/v1/tasks/{pending}")).status_code == 200
    await api.post(f"/api/v1/tasks/{pending}/cancel")
