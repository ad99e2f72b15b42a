"""The webhook sender killed with SIGKILL while deliveries wait for their retries (and while it
records the endings of tasks), or while the receiver holds its requests (attempts in flight,
their leases held), then started again: every event of every task reaches the receiver, and an
event sent more than once always carries the same `webhook-id`."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from shared.store import Store
from shared.webhooks.records import DeliveryState
from tests.support.faults import Services, submit_many, until_all_final
from tests.support.webhook_receiver import Received, Receiver

pytestmark = pytest.mark.fault

SENDER_ENV = {
    "TASKLIGHT_WEBHOOK_ALLOW_LOOPBACK": "true",
    "TASKLIGHT_WEBHOOK_RETRY_BASE_S": "0.3",
    "TASKLIGHT_WEBHOOK_RETRY_MAX_INTERVAL_S": "1",
    "TASKLIGHT_WEBHOOK_RETRY_WINDOW_S": "300",
    "TASKLIGHT_WEBHOOK_TIMEOUT_S": "2",
    "TASKLIGHT_WEBHOOK_POLL_S": "0.2",
}
TASKS_BEFORE = 20
TASKS_WHILE_DOWN = 10
#: Requests the receiver holds: as many as the sender attempts at once to one endpoint.
HELD = 4
#: A timeout the kill lands well within: a held attempt must still be in flight when it comes.
HOLD_TIMEOUT_S = "10"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1."""
    async with Receiver() as running:
        yield running


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    """Wait for `condition()` to hold; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(300)
async def test_a_sender_killed_mid_retry_loses_no_event_and_repeats_only_with_the_same_id(
    services: Services, http: httpx.AsyncClient, fault_store: Store, receiver: Receiver
) -> None:
    # Given a receiver that is down (503) and a sender retrying deliveries to it
    healthy = False
    answered: list[Received] = []

    async def answer(request: Received) -> tuple[int, dict[str, str]]:
        if healthy:
            answered.append(request)
            return 204, {}
        return 503, {}

    receiver.behaviours["/hook"] = answer
    services.env.update(SENDER_ENV)
    await services.start_api()
    worker = services.start_worker(concurrency=4)
    await services.until_workers_beat(fault_store, [worker])
    created = await http.post(
        "/api/v1/webhooks",
        json={"url": receiver.url("/hook"), "events": ["task.started", "task.completed"]},
    )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    services.start_sender()
    deliveries = fault_store.webhooks.deliveries.collection

    async def following() -> bool:
        place = await fault_store.webhooks.cursor.load()
        return place is not None and place.token is not None

    await until(following, "the sender follows the tasks' changes")
    ids = await submit_many(http, TASKS_BEFORE, {"rounds": 2, "round_s": 0.2}, parallel=5)

    async def retrying() -> bool:
        retried = await deliveries.count_documents({"attempts.1": {"$exists": True}})
        return retried >= 5

    await until(retrying, "deliveries being retried")

    # When the sender is killed in the middle of its retries, more tasks end while it is down,
    # and a new sender starts
    services.kill_sender()
    ids += await submit_many(http, TASKS_WHILE_DOWN, {"rounds": 1, "round_s": 0.1}, parallel=5)
    await until_all_final(fault_store, ids, timeout_s=90)
    services.start_sender()
    healthy = True

    # Then every event of every task is delivered, and nothing is left to send
    expected = {(task_id, kind) for task_id in ids for kind in ("task.started", "task.completed")}

    async def all_answered() -> bool:
        got = {(r.json["data"]["id"], r.json["type"]) for r in answered}
        return expected <= got

    await until(all_answered, "every event answered by the receiver", timeout_s=120)

    async def all_settled() -> bool:
        pending = await deliveries.count_documents({"state": {"$ne": "succeeded"}})
        return pending == 0

    await until(all_settled, "every delivery recorded as succeeded")
    stored = [d async for d in deliveries.find({})]
    assert len(stored) == len(expected)
    assert {d["state"] for d in stored} == {DeliveryState.SUCCEEDED.value}
    # An event that came more than once came with the same webhook-id, each signed validly.
    ids_of_event: dict[tuple[str, str], set[str]] = defaultdict(set)
    for request in receiver.at("/hook"):
        body = Webhook(secret).verify(request.body, request.headers)
        ids_of_event[(body["data"]["id"], body["type"])].add(request.webhook_id)
    assert set(ids_of_event) == expected
    assert all(len(webhook_ids) == 1 for webhook_ids in ids_of_event.values())
    assert len({next(iter(v)) for v in ids_of_event.values()}) == len(expected)


@pytest.mark.timeout(300)
async def test_a_sender_killed_while_the_receiver_holds_its_requests_sends_them_again_same_id(
    services: Services, http: httpx.AsyncClient, fault_store: Store, receiver: Receiver
) -> None:
    # Given a receiver that takes the first requests and holds them without an answer
    hold = receiver.hold("/held", HELD)
    services.env.update({**SENDER_ENV, "TASKLIGHT_WEBHOOK_TIMEOUT_S": HOLD_TIMEOUT_S})
    await services.start_api()
    worker = services.start_worker(concurrency=4)
    await services.until_workers_beat(fault_store, [worker])
    created = await http.post("/api/v1/webhooks", json={"url": receiver.url("/held")})
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    services.start_sender()
    deliveries = fault_store.webhooks.deliveries.collection

    async def following() -> bool:
        place = await fault_store.webhooks.cursor.load()
        return place is not None and place.token is not None

    await until(following, "the sender follows the tasks' changes")
    ids = await submit_many(http, TASKS_BEFORE, {"rounds": 1, "round_s": 0.1}, parallel=5)

    async def in_flight() -> bool:
        leased = await deliveries.count_documents({"lease": {"$exists": True}})
        return len(hold.requests) == HELD and leased >= HELD

    await until(in_flight, "the receiver holding requests whose leases the sender holds")

    # When the sender is killed with its attempts in flight, the receiver then answers them
    # 2xx (to nobody), more tasks end while it is down, and a new sender starts
    services.kill_sender()
    held = {r.json["data"]["id"] for r in hold.requests}
    killed = [d async for d in deliveries.find({"task_id": {"$in": sorted(held)}})]
    assert len(killed) == HELD
    # Killed mid-attempt: nothing of those attempts was recorded, their leases still stand.
    assert all(d["attempts"] == [] and "lease" in d for d in killed), killed
    hold.release.set()
    ids += await submit_many(http, TASKS_WHILE_DOWN, {"rounds": 1, "round_s": 0.1}, parallel=5)
    await until_all_final(fault_store, ids, timeout_s=90)
    services.start_sender()

    # Then every ending is delivered and recorded as succeeded, nothing is left to send
    expected = {(task_id, "task.completed") for task_id in ids}

    async def all_received() -> bool:
        got = {(r.json["data"]["id"], r.json["type"]) for r in receiver.at("/held")}
        return expected <= got

    # The held deliveries are due again when their leases end (the timeout and 5 s).
    await until(all_received, "every ending received", timeout_s=120)

    async def all_settled() -> bool:
        unsettled = await deliveries.count_documents({"state": {"$ne": "succeeded"}})
        return unsettled == 0

    await until(all_settled, "every delivery recorded as succeeded")
    stored = {d["task_id"]: d async for d in deliveries.find({})}
    assert len(stored) == len(expected)
    # The killed attempts left no trace: each held delivery has one attempt, the one after.
    assert all(len(stored[task_id]["attempts"]) == 1 for task_id in held)
    # The repeats: exactly the held deliveries came twice, each time with their delivery's
    # webhook-id and a valid signature.
    ids_of_task: dict[str, set[str]] = defaultdict(set)
    times_of_task: dict[str, int] = defaultdict(int)
    for request in receiver.at("/held"):
        task_id = Webhook(secret).verify(request.body, request.headers)["data"]["id"]
        ids_of_task[task_id].add(request.webhook_id)
        times_of_task[task_id] += 1
    assert {task_id: times_of_task[task_id] for task_id in held} == dict.fromkeys(held, 2)
    assert {t for t, times in times_of_task.items() if times > 1} == held
    assert ids_of_task == {task_id: {stored[task_id]["_id"]} for task_id in ids}
