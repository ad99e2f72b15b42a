"""The notifier with real users: revocation reaches open sockets, and nothing leaks across users.

Development mode is off, as in a deployment; alice and bob are users, root an administrator,
each with an API token; the api runs for sign-in and sign-out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.api.app import create_app
from services.notifier.app import Notifier
from services.notifier.constants import CloseCode
from shared.auth import CSRF_COOKIE, SESSION_COOKIE, AuthStore, Role
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import Phase, TaskState
from shared.records import new_task
from shared.settings import Settings
from shared.store import Store
from tests.support.servers import ServerThread
from tests.support.wsclient import Message, Socket, tasks_of, ws_connect

pytestmark = pytest.mark.integration

#: The token cache time: a revoked credential must close its sockets within it.
TOKEN_CACHE_S = 2.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings with development mode off, and a short token cache."""
    return settings.model_copy(update={"dev_mode": False, "token_cache_s": TOKEN_CACHE_S})


@dataclass
class Users:
    """The test's users and their tokens."""

    auth: AuthStore
    store: Store
    tokens: dict[str, str]
    api_url: str

    async def task(self, owner: str, state: TaskState = TaskState.WAITING) -> str:
        """A task of `owner`, stored directly."""
        task_id = new_task_id()
        task = new_task(task_id=task_id, name="test.count", args={}, owner=owner, at=utcnow())
        task.state = state
        if state is TaskState.COMPLETED:
            task.phase = Phase.ENDED
            task.finished_at = utcnow() - timedelta(minutes=1)
        await self.store.tasks.insert(task)
        return task_id


@pytest.fixture
async def users(settings: Settings, store: Store, notifier: Notifier) -> AsyncIterator[Users]:
    """alice, bob and root, with a token each; the api and the notifier running."""
    auth = AuthStore(store.accounts)
    tokens = {}
    for name in ("alice", "bob", "root"):
        role = Role.ADMIN if name == "root" else Role.USER
        await auth.create_user(name, role, password=f"{name}-password")
        tokens[name] = await auth.issue_token(name)
    async with ServerThread(create_app(settings), settings.api_port):
        yield Users(auth, store, tokens, f"http://127.0.0.1:{settings.api_port}")


async def closed_within(socket: Socket, timeout_s: float) -> tuple[int | None, float]:
    """The close code the server sent, and the seconds it took to come."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                await socket.ws.recv()
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), time.monotonic() - started
    except TimeoutError:
        raise AssertionError(f"the socket was still open after {timeout_s} s") from None


async def still_open(socket: Socket) -> bool:
    """Whether the socket answers a ping."""
    await socket.send({"type": "ping", "id": "alive"})
    answer = await socket.until(lambda m: m["type"] == "pong")
    return answer[-1] == {"type": "pong", "id": "alive"}


# Revocation


async def test_a_revoked_token_closes_its_sockets_with_4403_within_the_token_cache_time(
    settings: Settings, users: Users
) -> None:
    async with (
        ws_connect(settings, token=users.tokens["alice"]) as by_header,
        ws_connect(settings, token=None) as by_message,
        ws_connect(settings, token=users.tokens["bob"]) as bystander,
    ):
        await by_message.send({"type": "auth", "token": users.tokens["alice"]})
        await by_message.recv()
        for socket in (by_header, by_message, bystander):
            await socket.subscribe(scope="all")

        await users.auth.revoke_tokens("alice")
        closes = await asyncio.gather(
            closed_within(by_header, TOKEN_CACHE_S), closed_within(by_message, TOKEN_CACHE_S)
        )

        assert [code for code, _ in closes] == [CloseCode.REVOKED, CloseCode.REVOKED]
        assert max(took for _, took in closes) < TOKEN_CACHE_S
        assert await still_open(bystander)


async def test_a_deleted_users_sockets_are_closed_with_4403_even_one_opened_by_ticket(
    settings: Settings, users: Users
) -> None:
    async with httpx.AsyncClient(
        base_url=users.api_url, headers={"Authorization": f"Bearer {users.tokens['bob']}"}
    ) as api:
        ticket = (await api.post("/api/v1/ws-tickets")).json()["ticket"]
    async with (
        ws_connect(settings, token=users.tokens["bob"]) as by_token,
        ws_connect(settings, token=None) as by_ticket,
    ):
        await by_ticket.send({"type": "auth", "ticket": ticket})
        assert (await by_ticket.recv())["type"] == "authenticated"

        await users.auth.accounts.users.delete_one({"_id": "bob"})
        closes = await asyncio.gather(
            closed_within(by_token, TOKEN_CACHE_S), closed_within(by_ticket, TOKEN_CACHE_S)
        )

    assert [code for code, _ in closes] == [CloseCode.REVOKED, CloseCode.REVOKED]


async def test_signing_out_closes_the_sockets_of_that_session_with_4403(
    settings: Settings, users: Users
) -> None:
    async with httpx.AsyncClient(base_url=users.api_url) as browser:
        signed_in = await browser.post(
            "/api/v1/session", json={"username": "alice", "password": "alice-password"}
        )
        assert signed_in.status_code == 200
        cookie = f"{SESSION_COOKIE}={browser.cookies[SESSION_COOKIE]}"
        headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{settings.api_port}"}
        url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
        async with connect(url, additional_headers=headers) as ws:
            socket = Socket(ws)
            await socket.subscribe(scope="all")

            signed_out = await browser.delete(
                "/api/v1/session", headers={"X-CSRF-Token": browser.cookies[CSRF_COOKIE]}
            )
            assert signed_out.status_code == 204
            code, took = await closed_within(socket, TOKEN_CACHE_S)

    assert code == CloseCode.REVOKED
    assert took < TOKEN_CACHE_S


# No leak across users


async def test_another_users_task_id_learns_nothing_not_even_its_deletion(
    settings: Settings, users: Users, notifier: Notifier
) -> None:
    alices = await users.task("alice", TaskState.COMPLETED)
    nobodys = new_task_id()
    async with (
        ws_connect(settings, token=users.tokens["alice"]) as alice,
        ws_connect(settings, token=users.tokens["bob"]) as bob,
    ):
        await alice.subscribe("all", scope="all", since={alices: 1})
        # bob names alice's task as if he held it, in every way the protocol allows.
        theirs = await bob.subscribe("ids", tasks=[alices], since={alices: 1})
        nothing = await bob.subscribe("none", tasks=[nobodys], since={nobodys: 1})
        everything = await bob.subscribe("all", scope="all", since={alices: 1})

        await users.store.tasks.collection.update_one(
            {"_id": alices}, {"$set": {"metadata": {"note": "changed"}}, "$inc": {"version": 1}}
        )
        async with httpx.AsyncClient(
            base_url=users.api_url, headers={"Authorization": f"Bearer {users.tokens['alice']}"}
        ) as api:
            assert (await api.delete(f"/api/v1/tasks/{alices}")).status_code == 204
        # alice sees both; by the time she has, the notifier has offered them to everyone.
        seen = await alice.until(lambda m: m["type"] == "deleted")
        await bob.send({"type": "ping", "id": "p"})
        after = await bob.until(lambda m: m["type"] == "pong")

    assert [m["type"] for m in seen] == ["task", "deleted"]
    # Another user's task and one that never existed get the same answer, and then silence.
    assert [m["type"] for m in theirs] == [m["type"] for m in nothing] == ["error", "subscribed"]
    assert _without(theirs[0], alices) == _without(nothing[0], nobodys)
    assert [m["type"] for m in everything] == ["subscribed"]
    assert after == [{"type": "pong", "id": "p"}]


def _without(message: Message, task_id: str) -> str:
    """An error message without its subscription id and with the task id replaced."""
    return repr({**message, "id": "<sub>"}).replace(task_id, "<id>")


async def test_an_administrator_still_sees_every_users_deletions(
    settings: Settings, users: Users
) -> None:
    alices = await users.task("alice", TaskState.COMPLETED)
    async with ws_connect(settings, token=users.tokens["root"]) as root:
        initial = await root.subscribe("all", scope="all")
        await users.store.tasks.delete_finished(alices)
        [*_, deleted] = await root.until(lambda m: m["type"] == "deleted")

    assert alices in {t["id"] for t in tasks_of(initial)}
    assert deleted == {"type": "deleted", "sub": "all", "id": alices}
