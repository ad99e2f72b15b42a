"""A small WebSocket test client for the notifier: send JSON, read JSON with a deadline."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from shared.auth import DEV_TOKEN
from shared.records import new_task
from shared.settings import Settings
from shared.store import Store

Message = dict[str, Any]


class Socket:
    """One connection to the notifier, as a test drives it."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: Message) -> None:
        """Send one JSON message."""
        await self.ws.send(json.dumps(message))

    async def recv(self, timeout_s: float = 10.0) -> Message:
        """The next message; fails after `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            message: Message = json.loads(await self.ws.recv())
        return message

    async def until(
        self, done: Callable[[Message], bool], timeout_s: float = 15.0
    ) -> list[Message]:
        """Every message up to and including the first that `done` accepts."""
        seen: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching message within {timeout_s} s; saw {seen!r}")
            try:
                message = await self.recv(remaining)
            except TimeoutError:
                raise AssertionError(
                    f"no matching message within {timeout_s} s; saw {seen!r}"
                ) from None
            seen.append(message)
            if done(message):
                return seen

    async def subscribe(self, sub_id: str = "s1", **fields: Any) -> list[Message]:
        """Subscribe; returns the initial state up to and including `subscribed`."""
        await self.send({"type": "subscribe", "id": sub_id, **fields})
        return await self.until(lambda m: m["type"] == "subscribed" and m["id"] == sub_id)


@asynccontextmanager
async def ws_connect(
    settings: Settings, *, token: str | None = DEV_TOKEN, **kwargs: Any
) -> AsyncIterator[Socket]:
    """A connection to the test's notifier, authenticated by `token` in its handshake."""
    url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(url, compression=None, additional_headers=headers, **kwargs) as ws:
        yield Socket(ws)


def tasks_of(messages: list[Message], task_id: str | None = None) -> list[Message]:
    """The task documents in `task` messages (of one task, if given)."""
    return [
        m["task"]
        for m in messages
        if m["type"] == "task" and (task_id is None or m["task"]["id"] == task_id)
    ]


async def insert_task(store: Store, task_id: str, *, metadata: Message | None = None) -> None:
    """Store a `waiting` task directly (no broker): the notifier only reads the database."""
    from shared.clock import utcnow

    task = new_task(
        task_id=task_id, name="test.count", args={}, owner="dev", at=utcnow(), metadata=metadata
    )
    await store.tasks.insert(task)
