"""Several RabbitMQ addresses: connect to the first that answers, and on losing it, to the next.

aio-pika's robust connection, which FastStream's `RabbitBroker` rides on, reconnects to the one
URL it was given, restoring its channels, queues and consumers each time. Both a connection
attempt that fails and a connection that is lost reach its close callback
(`_on_connection_close`); `FailoverConnection` moves to the next address there, so the robust
connection's own reconnection loop dials the next node, and everything it restores lands there.

Publisher confirms are not carried over: a publish in flight when its connection is lost raises
(the confirm can no longer come), and the caller decides (the api answers 503, the outbox relay
publishes again), as with one address.

One more repair: RabbitMQ 3.10 (Debian 12's) keeps a channel's route to a quorum queue's leader
as the queue record had it when the channel first published there. A channel opened on a
surviving node before the queue elected its new leader (the robust connection is that quick)
nacks every publish from then on. So a nack renews the publishing channel: the nacked publish
still raises, the next ones go through a fresh channel (`FailoverBroker.publish`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from aio_pika import RobustConnection
from aio_pika.abc import TimeoutType
from aiormq.exceptions import DeliveryError, PublishError
from faststream.rabbit import RabbitBroker
from faststream.rabbit.utils import build_url
from yarl import URL

log = logging.getLogger(__name__)

#: Seconds within which nacks renew the publishing channel only once.
RENEW_EVERY_S = 1.0
#: Seconds a renewal waits for the channel to be restored before it gives up.
RENEW_WAIT_S = 30.0


def with_heartbeat(address: str, heartbeat_s: int) -> str:
    """`address` asking for AMQP heartbeats every `heartbeat_s` seconds, unless it says."""
    url = URL(address)
    if "heartbeat" in url.query:
        return address
    return str(url.update_query(heartbeat=heartbeat_s))


class ConfirmLost(ConnectionError):
    """A publish whose confirm can no longer come: its connection was lost first."""


class FailoverConnection(RobustConnection):
    """A robust connection over several addresses of one cluster, tried in turn.

    At the start, every address gets one attempt before `connect` gives up (aio-pika's fail-fast
    would give up after the first). After that it never gives up: each failed attempt or lost
    connection moves to the next address, round and round.
    """

    def __init__(
        self,
        url: URL,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        addresses: Sequence[str],
        **kwargs: Any,
    ) -> None:
        self.addresses = [URL(address) for address in addresses] or [URL(url)]
        self._requested_fail_fast = kwargs.get("fail_fast", True) not in (False, "0", "false")
        # The base gives up at the first failed attempt if asked to; this class counts a round
        # of them instead, so the base always keeps trying.
        kwargs["fail_fast"] = False
        super().__init__(self.addresses[0], loop=loop, **kwargs)
        self._index = 0
        self._failed_in_a_row = 0
        self._ever_connected = False
        self._gave_up: asyncio.Future[None] = self.loop.create_future()

    @property
    def address(self) -> URL:
        """The address this connection uses now (or tries next)."""
        return self.addresses[self._index]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed):
            failed = not self.connected.is_set()
            self._move_on(closing, failed=failed)
        await super()._on_connection_close(closing)

    def _move_on(self, closing: asyncio.Future[Any], *, failed: bool) -> None:
        lost = self.address.with_password(None)
        self._index = (self._index + 1) % len(self.addresses)
        self.url = self.address
        if len(self.addresses) > 1:
            log.warning(
                "broker at %s %s; next: %s",
                lost,
                "refused" if failed else "lost",
                self.address.with_password(None),
            )
        if not failed:
            self._failed_in_a_row = 0
            return
        self._failed_in_a_row += 1
        if (
            self._requested_fail_fast
            and not self._ever_connected
            and self._failed_in_a_row >= len(self.addresses)
            and not self._gave_up.done()
        ):
            error = closing.exception() if not closing.cancelled() else None
            self._gave_up.set_exception(error or ConnectionError("no broker address answered"))

    async def _on_connected(self) -> None:
        await super()._on_connected()
        self._ever_connected = True
        self._failed_in_a_row = 0
        if len(self.addresses) > 1:
            log.info("broker connection to %s", self.address.with_password(None))

    async def connect(self, timeout: TimeoutType = None) -> None:  # noqa: ASYNC109 (aio-pika's)
        """Connect to the first address that answers; raise once each has failed (if asked to
        fail fast, as FastStream does by default)."""
        connecting = asyncio.ensure_future(super().connect(timeout))
        await asyncio.wait({connecting, self._gave_up}, return_when=asyncio.FIRST_COMPLETED)
        if connecting.done():
            connecting.result()
            return
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        await self.close()
        self._gave_up.result()


class FailoverBroker(RabbitBroker):
    """FastStream's RabbitBroker over `FailoverConnection`: several addresses of one cluster."""

    def __init__(self, addresses: Sequence[str], **kwargs: Any) -> None:
        if not addresses:
            raise ValueError("no broker address given")
        super().__init__(addresses[0], **kwargs)
        # Each address completed as FastStream completes its one URL (default port, user).
        completed = [str(build_url(address)) for address in addresses]
        # FastStream hands these to aio-pika's `connect_robust`, which builds the connection
        # with `connection_class`: the one place to choose it.
        self._connection_kwargs["connection_class"] = partial(
            FailoverConnection, addresses=completed
        )
        self._renewed_at = -RENEW_EVERY_S
        self._renewing: asyncio.Future[None] | None = None

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        """RabbitBroker's publish; raises `ConfirmLost` when its connection was lost before
        the confirm came. A nack (not a return) renews the publishing channel, so one poisoned
        by a leader change does not refuse every later publish; it still raises."""
        try:
            return await super().publish(*args, **kwargs)
        except PublishError:
            raise  # returned unroutable: the channel is fine
        except DeliveryError:
            self._renew_publishing_channel()
            raise
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the caller is being cancelled
            # aiormq fails the confirms it waits for with the CancelledError that stopped its
            # reader (a heartbeat found the node silent): no reason to stop the caller.
            raise ConfirmLost("the broker connection was lost before the confirm") from exc

    def _renew_publishing_channel(self) -> None:
        # One renewal at a time, and a burst of nacks renews once: publishes in flight on the
        # renewed channel fail too.
        now = time.monotonic()
        if self._renewing is not None or now - self._renewed_at < RENEW_EVERY_S:
            return
        self._renewed_at = now
        self._renewing = asyncio.ensure_future(self._renew())
        self._renewing.add_done_callback(self._renewed)

    async def _renew(self) -> None:
        log.warning("a publish was nacked; renewing the publishing channel")
        channel = await self.config.channel_manager.get_channel()
        # Only a channel that is fully restored: closing one that the robust connection is
        # still restoring would make the connection give up that node.
        await asyncio.wait_for(channel.ready(), RENEW_WAIT_S)
        underlay = await channel.get_underlay_channel()
        # aio-pika's robust channel opens a new one underneath when this one closes.
        await underlay.close()

    def _renewed(self, renewing: asyncio.Future[None]) -> None:
        self._renewing = None
        if not renewing.cancelled() and renewing.exception() is not None:
            log.warning("renewing the publishing channel failed: %r", renewing.exception())
