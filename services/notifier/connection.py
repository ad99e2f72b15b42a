"""One WebSocket connection of the notifier: who it acts as, its subscriptions, its send queue.

A message for a connection that is keeping up (nothing queued, the socket's write buffer below
its limit) is written to the socket at once, by whoever has it: a fan-out of one change writes
one shared frame to thousands of sockets without waking a task per connection. A connection
that is behind gets its messages queued instead, and a sender task, started only then, drains
the queue. It is closed with 4000 when the queue overflows (too many messages or bytes), or
when a backlog is not drained within `drain_timeout_s`: a client that does not read holds at
most its queue's bounds and the socket's buffer, and only for that long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from services.notifier.constants import CloseCode
from services.notifier.sendqueue import Offer, SendQueue
from services.notifier.subscriptions import Subscription
from shared import metrics
from shared.auth import Principal

log = logging.getLogger(__name__)

#: Seconds the closing handshake of a connection the notifier gives up on may take before the
#: TCP connection is dropped: such a client is usually not reading, so the handshake never ends.
CLOSE_BEHIND_TIMEOUT_S = 2.0
#: An open connection's state, looked up once: the fan-out reads it per subscriber.
_OPEN = State.OPEN


@dataclass(frozen=True)
class Credential:
    """What a connection authenticated with, to check again while it is open."""

    #: "token", "session", "ticket" (used up: only its user is checked again) or "dev".
    kind: str
    #: The digest of the token or session secret (`shared.auth.credential_digest`).
    digest: str | None = None


@dataclass(frozen=True)
class Limits:
    """A connection's bounds (settings `ws_queue_limit`, `ws_queue_limit_bytes`,
    `ws_drain_timeout_s`)."""

    messages: int
    bytes: int
    drain_timeout_s: float


class Connection:
    """A connection as the hub sees it. Offers never wait, so one slow connection cannot delay
    the others; the sender task, while there is one, is the only one that waits on its socket."""

    __slots__ = (
        "_closer",
        "_room",
        "_sender",
        "credential",
        "drain_timeout_s",
        "plain",
        "principal",
        "queue",
        "subs",
        "ws",
    )

    def __init__(
        self,
        ws: ServerConnection,
        principal: Principal,
        limits: Limits,
        credential: Credential,
    ) -> None:
        self.ws = ws
        self.principal = principal
        self.credential = credential
        self.queue = SendQueue(limits.messages, limits.bytes)
        self.drain_timeout_s = limits.drain_timeout_s
        #: No extension (compression) was negotiated: every connection's frame of a message is
        #: the same bytes, so one prepared frame can be written to all of them.
        self.plain = not ws.protocol.extensions
        self.subs: dict[str, Subscription[Connection]] = {}
        self._room: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    @property
    def owner(self) -> str | None:
        """Whose tasks this connection may see; None for an administrator (everyone's)."""
        return self.principal.owner_filter

    @property
    def closing(self) -> bool:
        """Whether the notifier is closing it (or it overflowed): it takes nothing more."""
        return self._closer is not None or self.queue.closed

    def writable_now(self) -> bool:
        """Whether a message may go straight to the socket: nothing is queued before it, the
        socket's buffer is below its limit, and the connection is open."""
        ws = self.ws
        # `paused` is websockets' flow control: the transport's buffer is above its high-water
        # mark, and `send()` would wait for it to drain. (The notifier never sends a message in
        # fragments, so no frame of another message can be under way.)
        return (
            self.queue.bytes == 0
            and not ws.paused
            and ws.protocol.state is _OPEN
            and self._closer is None
        )

    def send(self, message: bytes) -> None:
        """Send a message that is not a task update (pong, error, subscribed, …)."""
        if self.writable_now():
            Prepared(message).write(self)
        else:
            self._after(self.queue.put_control(message))

    def send_update(self, sub_id: str, task_id: str, message: bytes) -> None:
        """Send an accepted task state or deletion (`queue.accept*` said so) now, or queue it
        (coalescing with a pending state of the same task)."""
        if self.writable_now():
            Prepared(message).write(self)
        else:
            self._after(self.queue.put_update(sub_id, task_id, message))

    def queue_update(self, sub_id: str, task_id: str, message: bytes) -> None:
        """Queue an accepted task state or deletion (the caller found it not `writable_now`)."""
        self._after(self.queue.put_update(sub_id, task_id, message))

    async def wait_for_room(self) -> None:
        """Wait until the queue is at most half full (initial states are paced by the client)."""
        while not self.closing and not self.queue.has_room():
            self._room = self._room or asyncio.Event()
            self._room.clear()
            await self._room.wait()

    async def stop(self) -> None:
        """Stop the sender task and drop what is pending; let a close under way finish (it
        is bounded by `CLOSE_BEHIND_TIMEOUT_S`)."""
        self.queue.close()
        self._wake()
        if self._sender is not None and self._sender is not asyncio.current_task():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._closer is not None:
            await self._closer

    def close(self, code: CloseCode, reason: str) -> None:
        """Close the connection (once) with `code`; the TCP connection is dropped if the
        closing handshake does not end within `CLOSE_BEHIND_TIMEOUT_S`."""
        if self._closer is None:
            self.queue.close()
            self._wake()
            self._closer = asyncio.create_task(self._close(code, reason))

    def _after(self, offer: Offer) -> None:
        metrics.WS_PUSHES.add(offer.value)
        if offer is Offer.QUEUED or offer is Offer.COALESCED:
            if self._sender is None:
                self._sender = asyncio.create_task(self._drain())
        elif offer is Offer.OVERFLOW:
            log.info("closing %s: its send queue filled up", self.ws.remote_address)
            self.close(CloseCode.TOO_SLOW, "send queue full: reconnect and resume")

    def _wake(self) -> None:
        if self._room is not None:
            self._room.set()

    async def _close(self, code: CloseCode, reason: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_BEHIND_TIMEOUT_S):
                await self.ws.close(code, reason)
        except TimeoutError:
            # close() waits for the socket to drain, which a client that does not read never
            # lets happen: drop the connection.
            if self.ws.transport is not None:
                self.ws.transport.abort()

    async def _drain(self) -> None:
        """Send the queue until it is empty and the socket has taken it, within the deadline."""
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                while (message := self.queue.pop()) is not None:
                    await self.ws.send(message, text=True)
                    if self.queue.has_room():
                        self._wake()
        except TimeoutError:
            log.info(
                "closing %s: its send queue did not drain within %g s",
                self.ws.remote_address,
                self.drain_timeout_s,
            )
            self.close(
                CloseCode.TOO_SLOW,
                f"send queue not drained within {self.drain_timeout_s:g} s: reconnect and resume",
            )
        except ConnectionClosed:
            self.queue.close()
        finally:
            self._sender = None
            self._wake()


class Prepared:
    """One text message for many connections, framed once for all of them."""

    __slots__ = ("frame", "text")

    def __init__(self, text: bytes) -> None:
        #: The message's JSON text, as UTF-8.
        self.text = text
        #: The whole WebSocket frame, as every connection without an extension gets it: a
        #: server's frames are unmasked, so they are the same bytes for all.
        self.frame = Frame(Opcode.TEXT, text).serialize(mask=False, extensions=[])

    def write(self, connection: Connection) -> None:
        """Write it to a connection found `writable_now`."""
        if connection.plain:
            # What `broadcast` would write, framed once for all; nothing in the protocol's
            # state depends on a data frame it did not frame itself.
            connection.ws.transport.write(self.frame)
        else:
            # An extension (compression) frames each connection's copy itself.
            broadcast((connection.ws,), self.text, text=True)
