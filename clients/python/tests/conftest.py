"""The client's tests run against a running tasklight: `TASKLIGHT_API_URL`, `TASKLIGHT_WS_URL`
and `TASKLIGHT_TOKEN` say where and as whom (the server's `make test` starts one and runs them).

Without `TASKLIGHT_API_URL` they fail at once instead of guessing: a client test that cannot
reach a server has tested nothing.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import pytest


@dataclass(frozen=True)
class Deployment:
    """Where the tasklight under test is, and the token the tests act with."""

    api_url: str
    ws_url: str
    token: str


@pytest.fixture(scope="session")
def deployment() -> Deployment:
    """The running tasklight (see the module)."""
    api_url = os.environ.get("TASKLIGHT_API_URL")
    ws_url = os.environ.get("TASKLIGHT_WS_URL")
    token = os.environ.get("TASKLIGHT_TOKEN")
    if not (api_url and ws_url and token):
        pytest.fail(
            "set TASKLIGHT_API_URL, TASKLIGHT_WS_URL and TASKLIGHT_TOKEN to a running tasklight "
            "(the server's tests/e2e/test_clients.py runs these tests against one it starts)"
        )
    return Deployment(api_url, ws_url, token)


class StallingProxy:
    """A TCP proxy in front of the notifier that can go silent: after `stall()` it forwards
    nothing either way but keeps both sockets open, as a network that vanished without a FIN or
    a RST. Runs on an event loop in a thread of its own, so sync and async tests can use it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.stalled = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        self.port: int = self._server.sockets[0].getsockname()[1]

    async def _start(self) -> asyncio.Server:
        return await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for end in (writer, up_writer):
            end.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            if self.stalled.is_set():
                continue  # swallowed: the peer hears nothing, and nothing closes
            writer.write(data)
            await writer.drain()

    def stall(self) -> None:
        """From now on, forward nothing."""
        self.stalled.set()

    def close(self) -> None:
        """Stop listening and end the proxy's thread."""

        async def stop() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


@pytest.fixture
def stalling_notifier(deployment: Deployment) -> Iterator[tuple[StallingProxy, str]]:
    """A stalling proxy to the notifier, and the WebSocket URL that goes through it."""
    parts = urlsplit(deployment.ws_url)
    proxy = StallingProxy(parts.hostname or "127.0.0.1", parts.port or 80)
    yield proxy, urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    proxy.close()
