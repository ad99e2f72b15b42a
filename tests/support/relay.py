"""A TCP relay in the test's event loop: a stand-in address for a server, that a test can sever.

Each connection accepted on `listen_host:port` is joined to a new one to the target. `sever()`
closes every joined pair (as the death of the server's machine would, seen from the client);
`stop()` also stops accepting, so a reconnect is refused; `freeze()` keeps the connections open
but lets nothing through (a paused server, a cut cable), until `thaw()`. The network-namespace
harness uses relays too: a process in a namespace reaches the host's loopback servers through
them.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

#: Bytes read at once from either side.
CHUNK_BYTES = 64 * 1024


@dataclass
class TcpRelay:
    """Relays `listen_host:port` (port 0: a free one) to `target_host:target_port`."""

    target_host: str
    target_port: int
    listen_host: str = "127.0.0.1"
    port: int = 0
    server: asyncio.Server | None = None
    pumps: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)
    #: Connections accepted so far.
    accepted: int = 0
    flowing: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.flowing.set()

    def freeze(self) -> None:
        """Hold every byte from now on, in both directions (connections stay open)."""
        self.flowing.clear()

    def thaw(self) -> None:
        """Let the held bytes and all later ones through again."""
        self.flowing.set()

    async def start(self) -> TcpRelay:
        """Listen; the port is known from here on."""
        self.server = await asyncio.start_server(self._join, self.listen_host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _join(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_w.close()
            return
        self.writers |= {client_w, server_w}
        for source, sink in ((client_r, server_w), (server_r, client_w)):
            pump = asyncio.create_task(self._pump(source, sink, client_w, server_w))
            self.pumps.add(pump)
            pump.add_done_callback(self.pumps.discard)

    async def _pump(
        self,
        source: asyncio.StreamReader,
        sink: asyncio.StreamWriter,
        *pair: asyncio.StreamWriter,
    ) -> None:
        try:
            while chunk := await source.read(CHUNK_BYTES):
                await self.flowing.wait()
                sink.write(chunk)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            # One side closed: close both, as a relay that forwards a FIN both ways would.
            for writer in pair:
                writer.close()
                self.writers.discard(writer)

    def sever(self) -> None:
        """Close every connection it carries, at once (clients see their server go away)."""
        for writer in list(self.writers):
            transport = writer.transport
            with contextlib.suppress(Exception):
                transport.abort()  # RST, not an orderly FIN: the machine is gone
        self.writers.clear()

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self.server is not None:
            self.server.close()
            self.server = None
        self.sever()
        for pump in list(self.pumps):
            pump.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)
