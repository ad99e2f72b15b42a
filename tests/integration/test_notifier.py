"""The notifier against a real database and worker: what subscribers see, and when."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.notifier.app import Notifier
from services.notifier.connection import CLOSE_BEHIND_TIMEOUT_S, Connection
from services.worker.app import Worker
from shared.auth import DEV_TOKEN
from shared.ids import new_task_id
from shared.lifecycle import TaskState
from shared.settings import Settings
from shared.store import Change, Store
from tests.support import FINAL, eventually
from tests.support.wsclient import Message, insert_task, tasks_of, ws_connect

pytestmark = pytest.mark.integration


def is_final_of(task_id: str) -> Any:
    return lambda m: (
        m["type"] == "task" and m["task"]["id"] == task_id and (m["task"]["state"] in FINAL)
    )


async def submit(api: httpx.AsyncClient, name: str, **args: Any) -> dict[str, Any]:
    response = await api.post("/api/v1/tasks", json={"name": name, "args": args})
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


async def test_a_subscriber_sees_waiting_running_progress_completed_in_order(
    settings: Settings, api: httpx.AsyncClient, worker: Worker, notifier: Notifier
) -> None:
    async with ws_connect(settings) as ws:
        assert tasks_of(await ws.subscribe(scope="all")) == []

        task = await submit(api, "test.count", rounds=3, round_s=0.3)
        messages = await ws.until(is_final_of(task["id"]))

    seen = tasks_of(messages, task["id"])
    steps = [
        (t["state"], t["progress_reports"][0]["done"] if t["progress_reports"] else None)
        for t in seen
    ]
    assert steps[0] == ("waiting", None)
    assert ("running", 1) in steps
    assert ("running", 2) in steps
    assert steps[-1] == ("completed", 3)
    versions = [t["version"] for t in seen]
    assert versions == sorted(set(versions))
    # Exactly what REST shows.
    assert seen[-1] == (await api.get(f"/api/v1/tasks/{task['id']}")).json()


async def test_an_id_subscription_sends_the_current_state_then_subscribed_then_changes(
    settings: Settings, api: httpx.AsyncClient, worker: Worker, notifier: Notifier
) -> None:
    task = await submit(api, "test.count", rounds=2, round_s=0.3)

    async with ws_connect(settings) as ws:
        initial = await ws.subscribe(tasks=[task["id"]])
        # The current state first; a change committed while it was read may already follow.
        *states, done = initial
        assert done["type"] == "subscribed"
        assert states
        assert {m["type"] for m in states} == {"task"}
        live = await ws.until(is_final_of(task["id"]))

    versions = [t["version"] for t in tasks_of(initial + live)]
    assert versions == sorted(set(versions))
    assert tasks_of(live)[-1]["result"] == {"counted": 2}


async def test_scope_all_sees_tasks_created_after_it_subscribed(
    settings: Settings, store: Store, notifier: Notifier
) -> None:
    first, second = new_task_id(), new_task_id()
    async with ws_connect(settings) as ws:
        await ws.subscribe(scope="all")
        await insert_task(store, first)
        await insert_task(store, second)
        messages = await ws.until(lambda m: m["type"] == "task" and m["task"]["id"] == second)

    assert [t["id"] for t in tasks_of(messages)] == [first, second]
    assert all(m["sub"] == "s1" for m in messages)


async def test_a_resumed_subscription_gets_exactly_what_it_missed(
    settings: Settings, api: httpx.AsyncClient, worker: Worker, notifier: Notifier
) -> None:
    task = await submit(api, "test.count", rounds=3, round_s=0.3)
    async with ws_connect(settings) as ws:
        seen = await ws.subscribe(tasks=[task["id"]])
        seen += await ws.until(
            lambda m: m["type"] == "task" and bool(m["task"]["progress_reports"])
        )
    held = tasks_of(seen)[-1]["version"]
    # The connection is gone; the task goes on.
    final = await eventually(
        lambda: api.get(f"/api/v1/tasks/{task['id']}"),
        lambda r: r.json()["state"] in FINAL,
    )

    async with ws_connect(settings) as ws:
        by_id = await ws.subscribe("again", tasks=[task["id"]], since={task["id"]: held})
        current = final.json()["version"]
        nothing_new = await ws.subscribe("same", tasks=[task["id"]], since={task["id"]: current})
        all_scope = await ws.subscribe(
            "all", scope="all", since={task["id"]: held}, since_ts=tasks_of(seen)[-1]["updated_at"]
        )

    assert [(t["state"], t["version"]) for t in tasks_of(by_id)] == [("completed", current)]
    assert tasks_of(nothing_new) == []
    assert [t["version"] for t in tasks_of(all_scope)] == [current]


async def test_a_notifier_restart_mid_stream_loses_no_final_state(
    settings: Settings, api: httpx.AsyncClient, worker: Worker
) -> None:
    from tasklight import Task, TasklightClient

    first = Notifier(settings)
    await first.start()
    client = TasklightClient(f"http://127.0.0.1:{settings.api_port}", first.url, token=DEV_TOKEN)
    seen: dict[str, list[Task]] = {}
    ids = [(await submit(api, "test.count", rounds=4, round_s=0.25))["id"] for _ in range(4)]

    async def follow() -> None:
        async for task in client.subscribe(ids):
            seen.setdefault(task["id"], []).append(task)

    follower = asyncio.create_task(follow())
    try:
        await eventually(lambda: _value(len(seen)), lambda n: n == len(ids))
        await first.stop()  # closes with 1001; the client reconnects
        await asyncio.sleep(0.5)  # changes committed while no notifier runs
        second = Notifier(settings)
        await second.start()
        try:
            await eventually(
                lambda: _value(seen),
                lambda s: all(s.get(i) and s[i][-1]["state"] in FINAL for i in ids),
                timeout_s=30,
            )
        finally:
            await second.stop()
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await client.aclose()

    for task_id in ids:
        versions = [t["version"] for t in seen[task_id]]
        assert versions == sorted(set(versions))
        assert seen[task_id][-1]["state"] == "completed"


async def _value(value: Any) -> Any:
    return value


async def test_a_client_that_never_reads_is_bounded_closed_and_delays_no_one(
    settings: Settings, store: Store
) -> None:
    limit = 20
    notifier = Notifier(settings.model_copy(update={"ws_queue_limit": limit}))
    await notifier.start()
    try:
        stalled_sock = socket.socket()
        stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled_sock.connect(("127.0.0.1", settings.notifier_port))
        stalled_sock.setblocking(False)
        url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
        async with (
            connect(
                url,
                sock=stalled_sock,
                max_queue=1,
                close_timeout=0.5,
                compression=None,
                additional_headers={"Authorization": f"Bearer {DEV_TOKEN}"},
            ) as stalled,
            ws_connect(settings) as healthy,
        ):
            await stalled.send('{"type": "subscribe", "id": "s", "scope": "all"}')
            await healthy.subscribe(scope="all")
            [server_side] = [
                c
                for c in notifier.hub.connections
                if c.ws.remote_address[1] == stalled_sock.getsockname()[1]
            ]
            peak_buffer = 0
            blob = {"blob": "x" * 32_000}
            ids = [new_task_id() for _ in range(150)]
            reader = asyncio.create_task(
                healthy.until(lambda m: m["type"] == "task" and m["task"]["id"] == ids[-1], 60)
            )
            for task_id in ids:
                await insert_task(store, task_id, metadata=blob)
                if server_side.ws.transport is not None:
                    peak_buffer = max(peak_buffer, server_side.ws.transport.get_write_buffer_size())
            received = await reader
            # Once the flood is over, a new change reaches the healthy client at once.
            last = new_task_id()
            await insert_task(store, last)
            await healthy.until(lambda m: m["type"] == "task" and m["task"]["id"] == last, 2.0)

            await eventually(
                lambda: _value(server_side in notifier.hub.connections), lambda present: not present
            )
    finally:
        await notifier.stop()

    assert {t["id"] for t in tasks_of(received)} == set(ids)
    assert server_side.queue.peak <= limit
    assert server_side.queue.closed
    # Never more than the socket's write limit and one message waits in the server's buffer.
    assert peak_buffer <= 32 * 1024 + 64 * 1024


async def test_oversized_frames_close_with_1009(settings: Settings, notifier: Notifier) -> None:
    async with ws_connect(settings) as ws:
        await ws.ws.send('{"type": "ping", "pad": "' + "x" * 70_000 + '"}')
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_bad_messages_get_their_documented_error_and_the_socket_stays_open(
    settings: Settings, store: Store, notifier: Notifier
) -> None:
    known = new_task_id()
    await insert_task(store, known)
    unknown = new_task_id()

    async with ws_connect(settings) as ws:
        await ws.ws.send("not json")
        malformed = await ws.recv()
        await ws.ws.send(b"\x00\x01")
        binary = await ws.recv()
        await ws.send({"type": "subscribe", "id": "s1"})
        invalid = await ws.recv()
        await ws.send({"type": "unsubscribe", "id": "nope"})
        unknown_sub = await ws.recv()
        mixed = await ws.subscribe("s1", tasks=[known, unknown, "garbage"])
        await ws.send({"type": "subscribe", "id": "s1", "scope": "all"})
        duplicate = await ws.recv()
        await ws.send({"type": "unsubscribe", "id": "s1"})
        unsubscribed = await ws.recv()
        await ws.send({"type": "ping", "id": "p1"})
        pong = await ws.recv()

    def problem(message: Message) -> tuple[str, str | None]:
        assert message["type"] == "error"
        return message["problem"]["type"].rsplit(":", 1)[1], message.get("id")

    assert problem(malformed) == ("malformed-message", None)
    assert problem(binary) == ("unsupported-frame", None)
    assert problem(invalid) == ("invalid-message", "s1")
    assert "tasks" in invalid["problem"]["detail"]
    assert problem(unknown_sub) == ("unknown-subscription", "nope")
    assert [m["type"] for m in mixed] == ["task", "error", "subscribed"]
    assert problem(mixed[1]) == ("not-found", "s1")
    assert mixed[1]["problem"]["tasks"] == [unknown, "garbage"]
    assert problem(duplicate) == ("duplicate-subscription", "s1")
    assert unsubscribed == {"type": "unsubscribed", "id": "s1"}
    assert pong == {"type": "pong", "id": "p1"}


async def test_healthz_answers_over_plain_http(settings: Settings, notifier: Notifier) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.notifier_port}") as http:
        health = await http.get("/healthz")
        elsewhere = await http.get("/nope")

    assert (health.status_code, health.text) == (200, "ok\n")
    assert elsewhere.status_code == 404


async def test_a_stopping_notifier_closes_connections_with_1001(
    settings: Settings, notifier: Notifier
) -> None:
    async with ws_connect(settings) as ws:
        await ws.subscribe(scope="all")
        await notifier.stop()
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


async def test_a_silent_connection_is_closed_by_the_heartbeat(settings: Settings) -> None:
    notifier = Notifier(settings.model_copy(update={"ws_ping_interval_s": 0.3}))
    await notifier.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", settings.notifier_port)
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        # Never answer a ping; read whatever comes until the server drops the connection.
        async with asyncio.timeout(15):
            received = await reader.read(-1)
        writer.close()
    finally:
        await notifier.stop()

    assert received.startswith(b"HTTP/1.1 101")
    # A close frame (0x88) with code 1011 (0x03f3).
    assert b"\x88" in received
    assert b"\x03\xf3" in received


async def test_a_lost_resume_token_is_rebuilt_from_the_database_without_skipping(
    settings: Settings, store: Store, notifier: Notifier
) -> None:
    task_id = new_task_id()
    await insert_task(store, task_id)
    async with ws_connect(settings) as ws:
        await ws.subscribe(tasks=[task_id])
        follower = notifier._follow
        assert follower is not None
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        # Committed while no stream follows; then the stream's place is lost.
        canceled = Change(sources=frozenset({TaskState.WAITING}), target=TaskState.CANCELED)
        assert await store.tasks.apply_blind(task_id, canceled)
        notifier.follower.resume_token = {"_data": "00"}
        notifier._follow = asyncio.create_task(notifier.follower.run())

        [message] = await ws.until(lambda m: m["type"] == "task")

    assert (message["task"]["state"], message["task"]["version"]) == ("canceled", 2)
    assert notifier.follower.rebuilds == 1


def _stalled_socket(settings: Settings) -> socket.socket:
    """A connected socket whose owner never reads: 4 KiB of receive buffer and no reads."""
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", settings.notifier_port))
    stalled.setblocking(False)
    return stalled


def _server_side(notifier: Notifier, client: socket.socket) -> Connection:
    port = client.getsockname()[1]
    [found] = [c for c in notifier.hub.connections if c.ws.remote_address[1] == port]
    return found


async def _flood_until_gone(
    notifier: Notifier, store: Store, server_side: Connection, timeout_s: float
) -> float:
    """Store 32 KB tasks until the notifier drops `server_side`; seconds from the first."""
    blob = {"blob": "x" * 32_000}
    started = asyncio.get_running_loop().time()
    for _ in range(400):
        if server_side not in notifier.hub.connections:
            break
        await insert_task(store, new_task_id(), metadata=blob)
    await eventually(
        lambda: _value(server_side in notifier.hub.connections),
        lambda present: not present,
        timeout_s=timeout_s,
    )
    return asyncio.get_running_loop().time() - started


async def test_a_client_that_does_not_drain_is_closed_with_4000_within_the_deadline(
    settings: Settings, store: Store
) -> None:
    # The queue's bounds are far away: only the drain deadline can close this connection.
    drain_s = 1.0
    notifier = Notifier(
        settings.model_copy(
            update={
                "ws_drain_timeout_s": drain_s,
                "ws_queue_limit": 100_000,
                "ws_queue_limit_bytes": 1 << 30,
            }
        )
    )
    await notifier.start()
    try:
        stalled_sock = _stalled_socket(settings)
        url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
        headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
        async with connect(
            url, sock=stalled_sock, max_queue=1, close_timeout=0.5, additional_headers=headers
        ) as ws:
            await ws.send('{"type": "subscribe", "id": "s", "scope": "all"}')
            await ws.recv()  # `subscribed`; from now on, nothing is read
            server_side = _server_side(notifier, stalled_sock)
            took_s = await _flood_until_gone(notifier, store, server_side, timeout_s=30)
    finally:
        await notifier.stop()

    close_sent = server_side.ws.protocol.close_sent
    assert close_sent is not None
    assert close_sent.code == 4000
    # The deadline, the closing handshake's own timeout, and the flood's first writes.
    assert took_s < drain_s + CLOSE_BEHIND_TIMEOUT_S + 3.0


async def test_a_client_whose_pending_bytes_pass_the_bound_is_closed_with_4000(
    settings: Settings, store: Store
) -> None:
    limit_bytes = 256 * 1024
    notifier = Notifier(
        settings.model_copy(
            update={
                "ws_queue_limit_bytes": limit_bytes,
                "ws_queue_limit": 100_000,
                "ws_drain_timeout_s": 600,
            }
        )
    )
    await notifier.start()
    try:
        stalled_sock = _stalled_socket(settings)
        url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
        headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
        async with connect(
            url, sock=stalled_sock, max_queue=1, close_timeout=0.5, additional_headers=headers
        ) as ws:
            await ws.send('{"type": "subscribe", "id": "s", "scope": "all"}')
            await ws.recv()
            server_side = _server_side(notifier, stalled_sock)
            await _flood_until_gone(notifier, store, server_side, timeout_s=30)
    finally:
        await notifier.stop()

    close_sent = server_side.ws.protocol.close_sent
    assert close_sent is not None
    assert close_sent.code == 4000
    # Never more than the bound and the one message that went past it.
    assert server_side.queue.peak_bytes <= limit_bytes + 40_000


async def test_a_task_that_cannot_be_rendered_is_skipped_and_the_socket_stays_open(
    settings: Settings, store: Store, notifier: Notifier
) -> None:
    good, odd, later = new_task_id(), new_task_id(), new_task_id()
    await insert_task(store, good)
    await insert_task(store, odd)
    # A document the task model cannot show (written by some other version, say).
    await store.tasks.collection.update_one({"_id": odd}, {"$set": {"created_at": "yesterday"}})

    async with ws_connect(settings) as ws:
        initial = await ws.subscribe(scope="all")
        await insert_task(store, later)
        await store.tasks.collection.update_one(
            {"_id": odd}, {"$set": {"progress_reports": "odd"}, "$inc": {"version": 1}}
        )
        live = await ws.until(lambda m: m["type"] == "task" and m["task"]["id"] == later)
        await ws.send({"type": "ping", "id": "p"})
        pong = await ws.until(lambda m: m["type"] == "pong")

    assert [t["id"] for t in tasks_of(initial)] == [good]
    assert odd not in {t["id"] for t in tasks_of(live + pong)}
    assert pong[-1] == {"type": "pong", "id": "p"}
