"""A real HTTP receiver of webhooks on 127.0.0.1, for the tests: it records every request and
answers as the test says (a status, after a delay, not until the test lets it, or not at all
until it is stopped)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from services.stack import free_port
from tests.support.servers import ServerThread

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        """The body, parsed."""
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        """Its `webhook-id`."""
        return self.headers["webhook-id"]


#: How the receiver answers a request: (status, extra headers), after whatever it awaits.
Behaviour = Callable[[Received], Awaitable[tuple[int, dict[str, str]]]]


@dataclass
class Hold:
    """Requests a receiver holds unanswered until `release` is set (then it answers 204)."""

    count: int
    requests: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def accept(_: Received) -> tuple[int, dict[str, str]]:
    """Answer 204."""
    return 204, {}


class Receiver:
    """`async with Receiver() as receiver`: listening at `receiver.url(path)`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        #: How it answers each path (paths not named are accepted).
        self.behaviours: dict[str, Behaviour] = {}
        self.released = asyncio.Event()
        self._holds: list[Hold] = []
        self._server = ServerThread(self, self.port)

    def url(self, path: str = "/hook") -> str:
        """Where a webhook endpoint should post to reach `path`."""
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        """What came to `path`, oldest first."""
        return [r for r in self.received if r.path == path]

    def fail_first(self, path: str, count: int, status: int = 503) -> None:
        """Answer `status` to the first `count` requests to `path`, then 204."""
        failed = 0

        async def behaviour(_: Received) -> tuple[int, dict[str, str]]:
            nonlocal failed
            if failed < count:
                failed += 1
                return status, {}
            return 204, {}

        self.behaviours[path] = behaviour

    def always(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer `status` to every request to `path`."""

        async def behaviour(_: Received) -> tuple[int, dict[str, str]]:
            return status, headers or {}

        self.behaviours[path] = behaviour

    def hang(self, path: str) -> None:
        """Never answer a request to `path` (until the receiver stops)."""

        async def behaviour(_: Received) -> tuple[int, dict[str, str]]:
            await self.released.wait()
            return 204, {}

        self.behaviours[path] = behaviour

    def hold(self, path: str, count: int) -> Hold:
        """Hold the first `count` requests to `path` unanswered until the test sets the hold's
        `release` (or the receiver stops); accept the later ones at once."""
        hold = Hold(count)
        self._holds.append(hold)

        async def behaviour(request: Received) -> tuple[int, dict[str, str]]:
            if len(hold.requests) < hold.count:
                hold.requests.append(request)
                await hold.release.wait()
            return 204, {}

        self.behaviours[path] = behaviour
        return hold

    async def __aenter__(self) -> Receiver:
        await self._server.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.released.set()
        for hold in self._holds:
            hold.release.set()
        await self._server.__aexit__(*exc)

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request = Received(scope["path"], headers, body)
        self.received.append(request)
        behaviour = self.behaviours.get(scope["path"], accept)
        status, extra = await behaviour(request)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in extra.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})
