"""One WebSocket connection of the notifier: its queue, its subscriptions and its sender task."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from services.notifier.sendqueue import Offer, SendQueue
from services.notifier.subscriptions import Subscription
from shared import metrics

log = logging.getLogger(__name__)

#: Close code for a connection whose queue filled up (docs/protocol.md).
CLOSE_TOO_SLOW = 4000
#: Seconds the closing handshake of a connection that fell behind may take before the TCP
#: connection is dropped: such a connection is usually not reading, so the handshake never ends.
CLOSE_BEHIND_TIMEOUT_S = 2.0


class Connection:
    """A connection as the hub sees it: offers go into the queue, the sender drains it.

    Offers never wait, so one slow connection cannot delay the others; the sender task is the only
    one that waits on this connection's socket.
    """

    __slots__ = ("_closer", "_room", "_sender", "_wakeup", "owner", "queue", "subs", "ws")

    def __init__(self, ws: ServerConnection, owner: str | None, queue_limit: int) -> None:
        self.ws = ws
        #: Whose tasks this connection may see; None for an administrator (everyone's).
        self.owner = owner
        self.queue = SendQueue(queue_limit)
        self.subs: dict[str, Subscription[Connection]] = {}
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the sender task."""
        self._sender = asyncio.create_task(self._send_forever())

    async def stop(self) -> None:
        """Stop the sender task and drop what is pending."""
        self.queue.close()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    def push_task(
        self, sub_id: str, task_id: str, version: int, task_json: str, *, final: bool
    ) -> None:
        """Offer a task state to one subscription of this connection."""
        self._after(self.queue.offer_task(sub_id, task_id, version, task_json, final=final))

    def push_deleted(self, sub_id: str, task_id: str) -> None:
        """Offer a deletion to one subscription of this connection."""
        self._after(self.queue.offer_deleted(sub_id, task_id))

    def push_control(self, message: str) -> None:
        """Offer a message that is not a task update."""
        self._after(self.queue.offer_control(message))

    async def wait_for_room(self) -> None:
        """Wait until at most half the queue is used (for initial states, paced by the client)."""
        while not self.queue.closed and len(self.queue) >= self.queue.limit // 2:
            self._room.clear()
            await self._room.wait()

    def _after(self, offer: Offer) -> None:
        metrics.WS_PUSHES.add(offer.value)
        if offer is Offer.QUEUED or offer is Offer.COALESCED:
            self._wakeup.set()
        elif offer is Offer.OVERFLOW and self._closer is None:
            log.info("closing %s: its send queue filled up", self.ws.remote_address)
            self._room.set()
            self._closer = asyncio.create_task(self._close_behind())

    async def _close_behind(self) -> None:
        try:
            async with asyncio.timeout(CLOSE_BEHIND_TIMEOUT_S):
                await self.ws.close(CLOSE_TOO_SLOW, "send queue full: reconnect and resume")
        except TimeoutError:
            # close() waits for the socket to drain, which a connection that does not read never
            # lets happen: drop the connection.
            if self.ws.transport is not None:
                self.ws.transport.abort()

    async def _send_forever(self) -> None:
        half = self.queue.limit // 2
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while (message := self.queue.pop()) is not None:
                    await self.ws.send(message)
                    if len(self.queue) < half:
                        self._room.set()
                self._room.set()
        except ConnectionClosed:
            self.queue.close()
            self._room.set()
