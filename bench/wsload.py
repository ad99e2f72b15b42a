"""A lightweight WebSocket subscriber for the notifier benchmarks: thousands in one process.

A full client (websockets' asyncio connection) spends tens of microseconds of Python per frame it
receives, so 10,000 of them in one process measure the load generator rather than the notifier.
This one does the opening handshake, sends one masked `subscribe` frame, waits for `subscribed`,
and then only notes when a given byte string (say `"version":2`) first arrives: a microsecond or
two per frame. It is a measuring device, not a client: it does not parse frames after that.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from typing import Any


def masked_text_frame(payload: bytes) -> bytes:
    """One masked (client-to-server) text frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, length)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + body


def upgrade_request(port: int, headers: dict[str, str]) -> bytes:
    """The opening handshake's HTTP request."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Subscriber(asyncio.Protocol):
    """One subscribed connection; `arm(marker)` starts watching for `marker`."""

    def __init__(self, request: bytes, subscribe: dict[str, Any]) -> None:
        self._request = request
        self._subscribe = masked_text_frame(json.dumps(subscribe).encode())
        self._buffer = bytearray()
        self._upgraded = False
        self._marker: bytes | None = None
        self._tail = b""
        self._closing = False
        loop = asyncio.get_running_loop()
        #: Resolved once `subscribed` arrived (the initial state is behind us).
        self.ready: asyncio.Future[None] = loop.create_future()
        #: Resolved with `time.perf_counter()` when the marker first arrived.
        self.arrived: asyncio.Future[float] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        marker = self._marker
        if marker is not None:
            window = self._tail + data
            if not self.arrived.done() and marker in window:
                self.arrived.set_result(time.perf_counter())
            self._tail = window[-len(marker) :]
            return
        self._buffer += data
        if not self._upgraded:
            head, found, rest = bytes(self._buffer).partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self._fail(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                return
            self._upgraded = True
            self._buffer = bytearray(rest)
            assert self.transport is not None
            self.transport.write(self._subscribe)
        if b'"type":"subscribed"' in self._buffer and not self.ready.done():
            self.ready.set_result(None)
            self._buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost: {exc!r}")

    def arm(self, marker: bytes) -> None:
        """From now on, note when `marker` arrives (in `arrived`, a new future)."""
        self._marker = marker
        self._tail = b""
        self.arrived = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        """Drop the connection."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, why: str) -> None:
        if self._closing:
            return
        for future in (self.ready, self.arrived):
            if not future.done():
                future.set_exception(ConnectionError(why))


async def subscribe(
    port: int, headers: dict[str, str], subscribe: dict[str, Any], timeout_s: float = 60
) -> Subscriber:
    """A connection subscribed as `subscribe` says, its initial state received."""
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: Subscriber(upgrade_request(port, headers), subscribe), "127.0.0.1", port
    )
    async with asyncio.timeout(timeout_s):
        await protocol.ready
    return protocol
