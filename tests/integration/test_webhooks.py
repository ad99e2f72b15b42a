"""Webhooks end to end on the real database, broker and HTTP: registered over REST, recorded
from the tasks change stream, sent by the sender to a real receiver that fails, hangs and
recovers; every signature checked with the `standardwebhooks` package, not our own code."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.api.app import create_app
from services.webhooks import sending
from services.webhooks.app import Sender
from services.worker.app import Worker
from shared.auth import AuthStore, Role
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import FINAL_STATES
from shared.settings import Settings
from shared.store import Store
from shared.webhooks.destinations import Destination, Target
from shared.webhooks.events import EventType
from shared.webhooks.records import Delivery
from tests.support import eventually
from tests.support.servers import DEV_AUTH, ServerThread
from tests.support.webhook_receiver import Received, Receiver

pytestmark = pytest.mark.integration

FINAL = {state.value for state in FINAL_STATES}
#: Quick retries and timeouts, and loopback allowed: the receiver is on 127.0.0.1.
QUICK: dict[str, Any] = {
    "webhook_allow_loopback": True,
    "webhook_retry_base_s": 0.2,
    "webhook_retry_max_interval_s": 0.5,
    "webhook_retry_window_s": 30,
    "webhook_timeout_s": 2.0,
    "webhook_poll_s": 0.1,
    "webhooks_port": 0,
}


@asynccontextmanager
async def hook_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api on `settings`, and a client of it as the development user."""
    base_url = f"http://127.0.0.1:{settings.api_port}"
    async with (
        ServerThread(create_app(settings), settings.api_port),
        httpx.AsyncClient(base_url=base_url, headers=DEV_AUTH, timeout=30) as client,
    ):
        yield client


@asynccontextmanager
async def running_sender(settings: Settings) -> AsyncIterator[Sender]:
    """A webhook sender on `settings`, started and, after, stopped."""
    sender = Sender(settings)
    await sender.start()
    try:
        yield sender
    finally:
        await asyncio.wait_for(sender.stop(), 30)


@pytest.fixture
def quick(settings: Settings) -> Settings:
    """The test's settings with quick webhooks."""
    return settings.model_copy(update=QUICK)


@pytest.fixture
async def api(quick: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The api, with quick webhook settings (loopback allowed)."""
    async with hook_api(quick) as client:
        yield client


@pytest.fixture
async def sender(quick: Settings) -> AsyncIterator[Sender]:
    """A running webhook sender."""
    async with running_sender(quick) as running:
        yield running


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1."""
    async with Receiver() as running:
        yield running


async def register(api: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    """Register an endpoint; the answer (with its secret)."""
    answer = await api.post("/api/v1/webhooks", json={"url": url, **body})
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


async def run_task(api: httpx.AsyncClient, name: str = "test.noop", **args: Any) -> dict[str, Any]:
    """Submit a task and wait until it ended; the task as the REST API shows it then."""
    answer = await api.post("/api/v1/tasks", json={"name": name, "args": args})
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["id"]

    async def read() -> dict[str, Any]:
        task: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        return task

    return await eventually(read, lambda t: t["state"] in FINAL, timeout_s=30)


async def deliveries(api: httpx.AsyncClient, endpoint_id: str) -> list[dict[str, Any]]:
    """An endpoint's deliveries, newest first."""
    answer = await api.get(f"/api/v1/webhooks/{endpoint_id}/deliveries", params={"limit": 200})
    assert answer.status_code == 200, answer.text
    results: list[dict[str, Any]] = answer.json()["results"]
    return results


async def arrived(
    receiver: Receiver, path: str, count: int, timeout_s: float = 30
) -> list[Received]:
    """The requests to `path` once there are at least `count`."""

    async def probe() -> list[Received]:
        return receiver.at(path)

    return await eventually(probe, lambda got: len(got) >= count, timeout_s=timeout_s)


def verified(secret: str, request: Received) -> Any:
    """The body of a request whose signature the Standard Webhooks library accepts."""
    return Webhook(secret).verify(request.body, request.headers)


async def test_an_endpoints_secret_is_shown_when_it_is_created_and_never_again(
    api: httpx.AsyncClient, receiver: Receiver
) -> None:
    created = await register(api, receiver.url(), description="CI")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["task.canceled", "task.completed", "task.failed"]
    shown = (await api.get(f"/api/v1/webhooks/{created['id']}")).json()
    assert "secret" not in shown
    assert created["secret"] not in json.dumps(shown)
    listed = (await api.get("/api/v1/webhooks")).json()["results"]
    assert [e["id"] for e in listed] == [created["id"]]
    assert created["secret"] not in json.dumps(listed)


async def test_destinations_inside_the_network_are_refused_unless_an_administrator_allows_them(
    settings: Settings, receiver: Receiver
) -> None:
    async with hook_api(settings) as api:  # loopback not allowed
        for url in [
            receiver.url(),
            "http://localhost/hook",
            "http://10.0.0.7/hook",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/hook",
            "http://[fe80::1]/hook",
            "http://[::1]:8080/hook",
        ]:
            answer = await api.post("/api/v1/webhooks", json={"url": url})
            assert answer.status_code == 422, (url, answer.text)
            problem = answer.json()
            assert problem["type"] == "urn:tasklight:problem:webhook-destination-refused"
            assert problem["errors"][0]["loc"] == ["body", "url"]
        for body in [{"url": "ftp://example.com/"}, {"url": "x", "events": []}, {"url": 3}]:
            answer = await api.post("/api/v1/webhooks", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
    allowed = settings.model_copy(
        update={"webhook_allowed_networks": "127.0.0.0/8", "api_port": settings.api_port}
    )
    async with hook_api(allowed) as api:
        await register(api, receiver.url())


async def test_a_finished_task_is_delivered_signed_with_the_task_as_the_api_shows_it(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/ends"))
    every = await register(
        api,
        receiver.url("/all"),
        events=["task.started", "task.progress", "task.completed"],
        task_types=["test.*"],
    )
    await asyncio.wait_for(sender.recorder.following.wait(), 10)
    await eventually(_stream_open(sender), bool)
    task = await run_task(api, "test.count", rounds=2, round_s=0)
    [request] = await arrived(receiver, "/ends", 1)
    body = verified(endpoint["secret"], request)
    assert body["type"] == "task.completed"
    assert body["data"] == task
    assert request.headers["content-type"] == "application/json"
    # The receiver holds the request before the sender has read the answer and recorded it.
    [delivery] = await eventually(
        lambda: deliveries(api, endpoint["id"]),
        lambda d: len(d) == 1 and d[0]["state"] != "pending",
    )
    assert delivery["id"] == request.webhook_id
    assert delivery["state"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [204]
    assert delivery["attempts"][0]["latency_ms"] >= 0
    assert delivery["attempts"][0]["address"] == "127.0.0.1"
    # The other endpoint took every event of the task: its start, each progress, its end.
    got = await arrived(receiver, "/all", 1)

    async def kinds() -> list[str]:
        return [verified(every["secret"], r)["type"] for r in receiver.at("/all")]

    seen = await eventually(kinds, lambda k: "task.completed" in k)
    assert seen[0] == "task.started"
    assert "task.progress" in seen
    assert len({r.webhook_id for r in got}) == len(receiver.at("/all"))


async def test_a_failed_and_a_canceled_task_are_delivered_signed_as_they_ended(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/endings"))  # the three endings
    await eventually(_stream_open(sender), bool)
    failed = await run_task(api, "test.fail", message="broke on purpose", after_s=0)
    assert failed["state"] == "failed"
    submitted = await api.post(
        "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 600, "round_s": 0.05}}
    )
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["id"]

    async def read() -> dict[str, Any]:
        task: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        return task

    await eventually(read, lambda t: t["state"] == "running")
    assert (await api.post(f"/api/v1/tasks/{task_id}/cancel")).status_code == 202
    canceled = await eventually(read, lambda t: t["state"] in FINAL)
    assert canceled["state"] == "canceled"
    got = await arrived(receiver, "/endings", 2)
    bodies = {body["type"]: body for body in (verified(endpoint["secret"], r) for r in got)}
    assert set(bodies) == {"task.failed", "task.canceled"}
    assert bodies["task.failed"]["data"] == failed
    assert "broke on purpose" in json.dumps(bodies["task.failed"]["data"])
    assert bodies["task.canceled"]["data"] == canceled
    assert len({r.webhook_id for r in got}) == 2


async def test_a_destination_refused_when_attempted_is_recorded_so_and_not_sent(
    settings: Settings, worker: Worker, receiver: Receiver
) -> None:
    # Registered while loopback was allowed; the sender's administrator has withdrawn that.
    allowed = settings.model_copy(update=QUICK)
    withdrawn = settings.model_copy(update={**QUICK, "webhook_allow_loopback": False})
    async with hook_api(allowed) as api:
        endpoint = await register(api, receiver.url("/withdrawn"))
        async with running_sender(withdrawn) as sender:
            await eventually(_stream_open(sender), bool)
            await run_task(api)

            async def attempted() -> list[dict[str, Any]]:
                return await deliveries(api, endpoint["id"])

            [delivery] = await eventually(attempted, lambda d: bool(d and d[0]["attempts"]))
        attempt = delivery["attempts"][0]
        assert attempt["error"].startswith("destination refused: 127.0.0.1: "), attempt
        assert "(loopback)" in attempt["error"]
        assert (attempt["status_code"], attempt["address"]) == (None, None)
        # Not given up on: a refusal is a failed attempt, retried in its window.
        assert delivery["state"] == "pending"
        assert receiver.at("/withdrawn") == []
        # Allowed again, the next attempt sends it, with the same webhook-id.
        async with running_sender(allowed):
            [request] = await arrived(receiver, "/withdrawn", 1)
        assert request.webhook_id == delivery["id"]
        verified(endpoint["secret"], request)


async def test_held_deliveries_keep_their_expiry_and_get_a_new_one_when_enabled(
    api: httpx.AsyncClient, store: Store, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    receiver.always("/held", 503)
    endpoint = await register(api, receiver.url("/held"))
    await eventually(_stream_open(sender), bool)
    await run_task(api)
    await arrived(receiver, "/held", 1)
    off = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": False})
    assert off.status_code == 200, off.text
    collection = store.webhooks.deliveries.collection

    async def held() -> dict[str, Any] | None:
        return await collection.find_one({"endpoint_id": endpoint["id"], "state": "paused"})

    # Paused once its attempt in flight (if any) has ended.
    paused = await eventually(held, lambda d: d is not None)
    assert paused is not None
    retention = timedelta(seconds=store.webhooks.deliveries.retention_s)
    assert paused["expires_at"] == paused["created_at"] + retention
    receiver.behaviours.pop("/held")
    before = len(receiver.at("/held"))
    on = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True})
    assert on.status_code == 200, on.text
    resumed = await collection.find_one({"_id": paused["_id"]})
    assert resumed is not None
    assert resumed["state"] != "paused"
    assert resumed["expires_at"] == resumed["window_from"] + retention
    assert resumed["expires_at"] > paused["expires_at"]
    got = await arrived(receiver, "/held", before + 1)
    assert got[-1].webhook_id == paused["_id"]


def _stream_open(sender: Sender) -> Any:
    async def probe() -> bool:
        return sender.recorder.streams_opened > 0

    return probe


async def test_a_failing_receiver_is_retried_with_the_same_webhook_id_until_it_recovers(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    receiver.fail_first("/flaky", 3, status=503)
    endpoint = await register(api, receiver.url("/flaky"))
    await eventually(_stream_open(sender), bool)
    await run_task(api)
    requests = await arrived(receiver, "/flaky", 4)
    assert len({r.webhook_id for r in requests}) == 1
    for request in requests:
        verified(endpoint["secret"], request)  # each attempt signed afresh, each valid
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert stamps == sorted(stamps)

    async def settled() -> list[dict[str, Any]]:
        return await deliveries(api, endpoint["id"])

    [delivery] = await eventually(settled, lambda d: bool(d) and d[0]["state"] == "succeeded")
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 503, 204]
    assert [a["error"] is None for a in delivery["attempts"]] == [False, False, False, True]
    assert delivery["attempts"][0]["error"].startswith("HTTP 503")


async def test_a_receiver_that_never_answers_times_out_and_holds_up_no_other_endpoint(
    settings: Settings, worker: Worker, receiver: Receiver
) -> None:
    slow_settings = settings.model_copy(update={**QUICK, "webhook_timeout_s": 6.0})
    receiver.hang("/slow")
    async with hook_api(slow_settings) as api, running_sender(slow_settings) as sender:
        slow = await register(api, receiver.url("/slow"))
        fast = await register(api, receiver.url("/fast"))
        await eventually(_stream_open(sender), bool)
        tasks = await asyncio.gather(*(run_task(api) for _ in range(6)))
        assert {t["state"] for t in tasks} == {"completed"}
        await arrived(receiver, "/fast", 6)
        # Every delivery to the fast endpoint is done while the slow one's first attempts are
        # still waiting for an answer: none of them had to wait for the slow endpoint.
        assert all(not d["attempts"] for d in await deliveries(api, slow["id"]))
        assert len(receiver.at("/slow")) == slow_settings.webhook_endpoint_concurrency
        fast_done = await eventually(
            lambda: deliveries(api, fast["id"]),
            lambda d: all(x["state"] != "pending" for x in d),
        )
        assert {d["state"] for d in fast_done} == {"succeeded"}

        async def timed_out() -> list[dict[str, Any]]:
            return [d for d in await deliveries(api, slow["id"]) if d["attempts"]]

        [first, *_] = await eventually(timed_out, bool, timeout_s=30)
        attempt = first["attempts"][0]
        assert attempt["status_code"] is None
        assert attempt["error"] == "no answer within 6 s"
        assert first["state"] == "pending"


async def test_endpoints_that_never_answer_leave_the_main_lane_to_a_healthy_one(
    settings: Settings, worker: Worker, receiver: Receiver
) -> None:
    lanes = settings.model_copy(
        update={
            **QUICK,
            "webhook_timeout_s": 12.0,
            "webhook_concurrency": 8,
            "webhook_endpoint_concurrency": 4,
            "webhook_slow_concurrency": 2,
            "webhook_slow_after_s": 0.5,
        }
    )
    # More hanging endpoints than the main lane has room for: 3 of them, 4 deliveries each.
    hanging = [f"/hang-{n}" for n in range(3)]
    for path in hanging:
        receiver.hang(path)
    async with hook_api(lanes) as api, running_sender(lanes) as sender:
        for path in hanging:
            await register(api, receiver.url(path), task_types=["test.noop"])
        healthy = await register(api, receiver.url("/healthy"), task_types=["test.count"])
        await eventually(_stream_open(sender), bool)
        await asyncio.gather(*(run_task(api) for _ in range(4)))

        async def held() -> int:
            return sum(len(receiver.at(path)) for path in hanging)

        # Every slot of the main lane is taken by an attempt that will get no answer.
        await eventually(held, lambda n: n >= lanes.webhook_concurrency)
        for count in range(1, 4):
            await run_task(api, "test.count", rounds=0)
            ended = time.monotonic()
            got = await arrived(receiver, "/healthy", count)
            # Well before a hanging attempt gives up: it did not wait for one.
            assert got[-1].at - ended < lanes.webhook_timeout_s / 3, got[-1].at - ended
            verified(healthy["secret"], got[-1])
        # The hanging endpoints took at most their cap each, none was attempted twice.
        assert await held() <= len(hanging) * lanes.webhook_endpoint_concurrency
        receiver.released.set()  # so the sender's stop need not wait out their timeouts


async def test_an_endpoint_failing_for_good_is_disabled_saying_why_and_replay_sends_again(
    settings: Settings, worker: Worker, receiver: Receiver
) -> None:
    failing = settings.model_copy(
        update={**QUICK, "webhook_retry_window_s": 1.0, "webhook_disable_after_failures": 2}
    )
    receiver.always("/down", 500)
    async with hook_api(failing) as api, running_sender(failing) as sender:
        endpoint = await register(api, receiver.url("/down"))
        await eventually(_stream_open(sender), bool)
        await run_task(api)
        await run_task(api)

        async def shown() -> dict[str, Any]:
            got: dict[str, Any] = (await api.get(f"/api/v1/webhooks/{endpoint['id']}")).json()
            return got

        disabled = await eventually(shown, lambda e: not e["enabled"], timeout_s=30)
        assert "2 deliveries in a row failed" in disabled["disabled_reason"]
        assert "HTTP 500" in disabled["disabled_reason"]
        assert disabled["consecutive_failures"] == 2
        both = await deliveries(api, endpoint["id"])
        assert {d["state"] for d in both} == {"failed"}
        assert all(len(d["attempts"]) >= 2 for d in both)
        # The receiver is fixed; its owner enables the endpoint and replays one delivery.
        receiver.behaviours.pop("/down")
        before = len(receiver.at("/down"))
        enabled = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True})
        assert enabled.json()["enabled"] is True
        assert enabled.json()["disabled_reason"] is None
        replay = await api.post(
            f"/api/v1/webhooks/{endpoint['id']}/deliveries/{both[0]['id']}/replay"
        )
        assert replay.status_code == 202, replay.text
        got = await arrived(receiver, "/down", before + 1)
        assert got[-1].webhook_id == both[0]["id"]
        verified(endpoint["secret"], got[-1])
        missing = await api.post(f"/api/v1/webhooks/{endpoint['id']}/deliveries/msg_x/replay")
        assert missing.status_code == 404


async def test_a_disabled_endpoint_gets_nothing_until_it_is_enabled(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/paused"), events=["task.started"])
    marker = await register(api, receiver.url("/marker"))
    await eventually(_stream_open(sender), bool)
    off = await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": False})
    assert off.json()["disabled_reason"] == "disabled by dev"
    await run_task(api)
    # Evidence that the sender saw the task: the other endpoint got its end.
    await arrived(receiver, "/marker", 1)
    assert receiver.at("/paused") == []
    assert await deliveries(api, endpoint["id"]) == []
    await api.patch(f"/api/v1/webhooks/{endpoint['id']}", json={"enabled": True})
    await eventually(_recorder_knows(sender, endpoint["id"]), bool)
    await run_task(api)
    await arrived(receiver, "/paused", 1)
    assert marker["id"] != endpoint["id"]


def _recorder_knows(sender: Sender, endpoint_id: str) -> Any:
    async def probe() -> bool:
        await sender.directory.refresh()
        return sender.directory.get(endpoint_id) is not None

    return probe


async def test_a_rotated_secret_signs_beside_the_new_one_during_the_overlap(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/rotating"))
    rotated = await api.post(f"/api/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None
    await eventually(_stream_open(sender), bool)
    await run_task(api)
    [request] = await arrived(receiver, "/rotating", 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verified(endpoint["secret"], request) == verified(new_secret, request)


async def test_only_the_owners_tasks_go_to_the_owners_endpoints(
    quick: Settings,
    api: httpx.AsyncClient,
    store: Store,
    worker: Worker,
    sender: Sender,
    receiver: Receiver,
) -> None:
    auth = AuthStore(store.accounts)
    await auth.create_user("alice", Role.USER)
    alice_auth = {"Authorization": f"Bearer {await auth.issue_token('alice')}"}
    base_url = f"http://127.0.0.1:{quick.api_port}"
    async with httpx.AsyncClient(base_url=base_url, headers=alice_auth, timeout=30) as alice:
        alices = await register(alice, receiver.url("/alice"))
        assert (await api.get(f"/api/v1/webhooks/{alices['id']}")).status_code == 404
        assert (await api.get("/api/v1/webhooks")).json()["results"] == []
        assert (await api.delete(f"/api/v1/webhooks/{alices['id']}")).status_code == 404
        await eventually(_stream_open(sender), bool)
        devs_task = await run_task(api)
        alices_task = await run_task(alice)
        [request] = await arrived(receiver, "/alice", 1)
        assert verified(alices["secret"], request)["data"]["id"] == alices_task["id"]
        assert devs_task["id"] not in {r.json["data"]["id"] for r in receiver.at("/alice")}


async def test_a_redirect_is_not_followed(
    api: httpx.AsyncClient, worker: Worker, sender: Sender, receiver: Receiver
) -> None:
    receiver.always("/moved", 302, {"location": receiver.url("/elsewhere")})
    endpoint = await register(api, receiver.url("/moved"))
    await eventually(_stream_open(sender), bool)
    await run_task(api)
    await arrived(receiver, "/moved", 2)

    async def attempted() -> list[dict[str, Any]]:
        return await deliveries(api, endpoint["id"])

    [delivery] = await eventually(attempted, lambda d: bool(d and d[0]["attempts"]))
    assert delivery["attempts"][0]["status_code"] == 302
    assert "redirects are not followed" in delivery["attempts"][0]["error"]
    assert receiver.at("/elsewhere") == []


async def test_what_ended_while_the_sender_was_down_is_delivered_when_it_is_back(
    quick: Settings, api: httpx.AsyncClient, store: Store, worker: Worker, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/later"))
    async with running_sender(quick) as sender:
        await eventually(_stream_open(sender), bool)
        await run_task(api)
        await arrived(receiver, "/later", 1)
    # Down: two tasks end. Back: it resumes from its stored place in the stream.
    down = [await run_task(api), await run_task(api)]
    async with running_sender(quick):
        got = await arrived(receiver, "/later", 3)
    assert {r.json["data"]["id"] for r in got[1:]} == {t["id"] for t in down}
    # Down again, and its place is lost (as when the server pruned the stream's history): it
    # catches up from the tasks that finished since.
    place = await store.webhooks.cursor.load()
    assert place is not None
    assert place.token is not None
    await store.webhooks.cursor.save(None, place.seen_at)
    lost = await run_task(api)
    async with running_sender(quick):
        got = await arrived(receiver, "/later", 4)
    assert got[-1].json["data"]["id"] == lost["id"]
    assert len({r.webhook_id for r in got}) == len(got)
    assert len(await deliveries(api, endpoint["id"])) == 4


async def test_with_no_endpoint_the_sender_follows_nothing(
    quick: Settings,
    api: httpx.AsyncClient,
    store: Store,
    worker: Worker,
    sender: Sender,
    receiver: Receiver,
) -> None:
    await asyncio.wait_for(sender.recorder.following.wait(), 10)
    await run_task(api)
    assert sender.recorder.streams_opened == 0
    place = await store.webhooks.cursor.load()
    assert place is not None
    assert place.token is None
    await register(api, receiver.url("/now"))
    await eventually(_stream_open(sender), bool)
    await run_task(api)
    got = await arrived(receiver, "/now", 1)
    assert len(got) == 1


async def test_two_senders_share_the_work_and_never_send_a_delivery_twice(
    quick: Settings, api: httpx.AsyncClient, worker: Worker, receiver: Receiver
) -> None:
    endpoint = await register(api, receiver.url("/shared"))
    async with running_sender(quick) as first, running_sender(quick) as second:
        await eventually(_stream_open(first), bool)
        await eventually(_stream_open(second), bool)
        tasks = await asyncio.gather(*(run_task(api) for _ in range(10)))
        got = await arrived(receiver, "/shared", 10)

        async def settled() -> list[dict[str, Any]]:
            return await deliveries(api, endpoint["id"])

        done = await eventually(settled, lambda d: {x["state"] for x in d} == {"succeeded"})
    assert len(done) == 10
    assert all(len(d["attempts"]) == 1 for d in done)
    assert sorted(r.webhook_id for r in got) == sorted(d["id"] for d in done)
    assert {r.json["data"]["id"] for r in got} == {t["id"] for t in tasks}


async def test_an_endpoint_can_be_changed_and_removed_and_the_limit_holds(
    quick: Settings, receiver: Receiver
) -> None:
    limited = quick.model_copy(update={"webhook_max_endpoints": 2})
    async with hook_api(limited) as api:
        first = await register(api, receiver.url("/a"))
        await register(api, receiver.url("/b"))
        third = await api.post("/api/v1/webhooks", json={"url": receiver.url("/c")})
        assert third.status_code == 409
        assert third.json()["type"] == "urn:tasklight:problem:too-many-webhooks"
        changed = await api.patch(
            f"/api/v1/webhooks/{first['id']}",
            json={"url": receiver.url("/a2"), "events": ["task.failed"], "task_types": ["x"]},
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["url"], changed.json()["events"]) == (
            receiver.url("/a2"),
            ["task.failed"],
        )
        refused = await api.patch(
            f"/api/v1/webhooks/{first['id']}", json={"url": "http://10.1.1.1/"}
        )
        assert refused.status_code == 422
        assert (
            await api.patch(f"/api/v1/webhooks/{first['id']}", json={"url": None})
        ).status_code == 422
        assert (await api.delete(f"/api/v1/webhooks/{first['id']}")).status_code == 204
        assert (await api.get(f"/api/v1/webhooks/{first['id']}")).status_code == 404
        assert (await api.get("/api/v1/webhooks/not-an-id")).status_code == 404
        second = (await api.get("/api/v1/webhooks")).json()["results"][0]["id"]
        bad_cursor = await api.get(f"/api/v1/webhooks/{second}/deliveries?cursor=x")
        assert bad_cursor.status_code == 422


async def test_an_attempt_connects_to_the_address_that_was_checked_never_looking_the_name_up(
    receiver: Receiver,
) -> None:
    # A name that resolves nowhere: only a connection to the checked address can reach the
    # receiver, which still sees the name in Host (as TLS would in SNI).
    url = f"http://hooks.invalid:{receiver.port}/pinned"
    destination = Destination(Target("http", "hooks.invalid", receiver.port), "127.0.0.1")
    answer = await sending.post(destination, url, {"webhook-id": "msg_1"}, "{}", timeout_s=5)
    assert answer.status == 204
    [request] = receiver.at("/pinned")
    assert request.headers["host"] == f"hooks.invalid:{receiver.port}"
    assert request.headers["webhook-id"] == "msg_1"
    closed = Destination(Target("http", "hooks.invalid", 9), "127.0.0.1")
    with pytest.raises(sending.AttemptFailed, match="could not connect"):
        await sending.post(closed, "http://hooks.invalid:9/", {}, "{}", timeout_s=5)


def _delivery(endpoint_id: str, delivery_id: str, at: datetime, *, due: bool = False) -> Delivery:
    """A completed task's delivery to `endpoint_id`, recorded `at` (and due then, if `due`)."""
    return Delivery(
        id=delivery_id,
        endpoint_id=endpoint_id,
        owner="dev",
        task_id=new_task_id(),
        event=EventType.COMPLETED,
        payload="{}",
        window_from=at,
        created_at=at,
        updated_at=at,
        next_attempt_at=at if due else None,
    )


@pytest.mark.parametrize("limit", [1, 2])
async def test_an_odd_delivery_is_skipped_and_every_delivery_behind_it_stays_reachable(
    api: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture, limit: int
) -> None:
    endpoint = await register(api, "http://127.0.0.1:9/hook")
    newest = utcnow().replace(microsecond=0)
    good: list[Delivery] = []
    odd: list[str] = []
    for age in range(9):
        delivery = _delivery(endpoint["id"], f"msg_{age:02d}", newest - timedelta(seconds=age))
        if age in (0, 3, 4, 8):  # first, last, and two in a row: an event no one knows
            odd.append(delivery.id)
            document = {**delivery.model_dump(by_alias=True), "event": "task.odd"}
            await store.webhooks.deliveries.collection.insert_one(document)
        else:
            good.append(delivery)
    assert await store.webhooks.deliveries.record(good) == len(good)
    seen: list[str] = []
    url: str | None = f"/api/v1/webhooks/{endpoint['id']}/deliveries?limit={limit}"
    while url:
        answer = await api.get(url)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        assert len(page["results"]) <= limit
        seen += [d["id"] for d in page["results"]]
        url = page["next"]
    assert seen == [d.id for d in good]
    logged = " ".join(r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage())
    assert all(delivery_id in logged for delivery_id in odd)


async def test_an_odd_due_delivery_is_taken_out_of_the_round_and_holds_up_none_behind_it(
    api: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint = await register(api, "http://127.0.0.1:9/hook")
    now = utcnow().replace(microsecond=0)
    deliveries = store.webhooks.deliveries

    def due_at(number: int) -> Delivery:
        at = now - timedelta(seconds=10 - number)
        return _delivery(endpoint["id"], f"msg_due_{number}", at, due=True)

    odd = [due_at(number) for number in range(3)]  # the most overdue: read first
    for delivery in odd:
        document = {**delivery.model_dump(by_alias=True), "event": "task.odd"}
        await deliveries.collection.insert_one(document)
    good = due_at(5)
    assert await deliveries.record([good]) == 1
    first = await deliveries.due(now, limit=2)
    assert first == []  # the two odd ones filled the round...
    # ...and left it: the next round reads the last odd one and the good one behind it, and
    # the one after finds only the good one.
    assert [d.id for d in await deliveries.due(now, limit=2)] == [good.id]
    assert [d.id for d in await deliveries.due(now, limit=2)] == [good.id]
    assert await deliveries.get(odd[0].id) is None
    logged = " ".join(r.getMessage() for r in caplog.records if "cannot be read" in r.getMessage())
    assert all(delivery.id in logged for delivery in odd)
