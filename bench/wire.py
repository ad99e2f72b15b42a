"""Database commands and statements by kind, counted at the wire by a small TCP proxy.

SecantusDB's `serverStatus` counts commands in mongod's six buckets (`insert`, `query`, `update`,
`delete`, `getmore`, `command`: `aggregate`, `findAndModify` and `hello` all fall in the last)
and a 100-document insert as one; it has no per-statement count. So a benchmark that wants both
puts this proxy between its clients and the server: every message a client sends is an OP_MSG
whose first body key names the command (`insert`, `update`, `find`, `getMore`, `aggregate`...);
its statements are the documents of its `documents`, `updates` or `deletes` (a document sequence
or the body's array), one for any other command. Replies pass through untouched.

The proxy adds a hop to every round trip and runs in the benchmark's process, so the runs it
counts are not the ones that are timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import bson

#: OP_MSG, the opcode of every command of a modern driver.
OP_MSG = 2013
#: The field of a write command that carries its statements.
STATEMENTS = {"insert": "documents", "update": "updates", "delete": "deletes"}


def command_of(message: bytes) -> tuple[str, int]:
    """(command name, statements) of one client message, header included."""
    (opcode,) = struct.unpack_from("<i", message, 12)
    if opcode != OP_MSG:
        return f"opcode {opcode}", 1
    (flags,) = struct.unpack_from("<I", message, 16)
    end = len(message) - (4 if flags & 1 else 0)  # bit 0: a CRC-32C follows the sections
    offset = 20
    name = ""
    body: bytes = b""
    sequences: dict[str, int] = {}
    while offset < end:
        kind = message[offset]
        offset += 1
        (size,) = struct.unpack_from("<i", message, offset)
        if kind == 0:
            body = message[offset : offset + size]
            # The first element: type byte, then its name as a C string.
            name = body[5 : body.index(b"\0", 5)].decode()
        else:
            section_end = offset + size
            start = offset + 4
            identifier_end = message.index(b"\0", start)
            identifier = message[start:identifier_end].decode()
            count, cursor = 0, identifier_end + 1
            while cursor < section_end:
                (document_size,) = struct.unpack_from("<i", message, cursor)
                cursor += document_size
                count += 1
            sequences[identifier] = count
        offset += size
    carrier = STATEMENTS.get(name)
    if carrier is None:
        return name, 1
    if carrier in sequences:
        return name, sequences[carrier]
    return name, len(bson.decode(body).get(carrier, ()))


@dataclass
class Counts:
    """Commands and statements seen, by command name."""

    commands: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, statements: int) -> None:
        """Count one command of `statements` statements."""
        self.commands[name] += 1
        self.statements[name] += statements

    def per_task(self, tasks: int) -> dict[str, dict[str, float]]:
        """Commands and statements per task, by command name, most frequent first."""
        return {
            name: {
                "commands": round(count / tasks, 2),
                "statements": round(self.statements[name] / tasks, 2),
            }
            for name, count in self.commands.most_common()
        }


class WireCounter:
    """A proxy on a free local port to the server at `upstream_port`, counting commands."""

    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.counts = Counts()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def port(self) -> int:
        """Where clients connect instead of the server."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self) -> str:
        """A MongoDB connection string through the proxy."""
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    def reset(self) -> Counts:
        """Begin counting afresh; what was counted until now."""
        counted, self.counts = self.counts, Counts()
        return counted

    async def start(self) -> None:
        """Listen."""
        self._server = await asyncio.start_server(self._serve, self.host, 0)

    async def stop(self) -> None:
        """Stop listening and close every connection."""
        if self._server is not None:
            self._server.close()
        # Closing a client's end ends its read loop, which then closes the server's end.
        for writer in list(self._clients):
            writer.close()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _serve(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._clients.add(client_out)
        server_in, server_out = await asyncio.open_connection(self.host, self.upstream_port)
        replies = asyncio.create_task(_pipe(server_in, client_out))
        try:
            while True:
                header = await client_in.readexactly(16)
                (length,) = struct.unpack_from("<i", header)
                message = header + await client_in.readexactly(length - 16)
                self.counts.add(*command_of(message))
                server_out.write(message)
                await server_out.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            replies.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await replies
            for writer in (server_out, client_out):
                writer.close()
            self._connections.discard(task)
            self._clients.discard(client_out)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy bytes from `source` to `sink` until `source` ends."""
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    sink.close()


@contextlib.contextmanager
def counting(upstream_port: int) -> Iterator[WireCounter]:
    """A `WireCounter` to the server at `upstream_port`, served by an event loop of its own in
    a thread (so synchronous clients, like Celery's, can go through it too)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="wire-counter", daemon=True)
    thread.start()
    wire = WireCounter(upstream_port)
    try:
        asyncio.run_coroutine_threadsafe(wire.start(), loop).result(10)
        yield wire
    finally:
        asyncio.run_coroutine_threadsafe(wire.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
