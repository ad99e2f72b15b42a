"""The notifier's composition root: settings → store, change follower, hub → WebSocket server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.notifier.client import Client
from services.notifier.follower import ChangeFollower
from services.notifier.hub import Hub
from services.notifier.protocol import (
    PROBLEM,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    error_for,
    error_message,
    parse,
    pong_message,
)
from shared.settings import Settings
from shared.store import open_store

log = logging.getLogger(__name__)

WS_PATH = "/ws"
#: Seconds a closing handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT_S = 5.0
#: Seconds the first change stream may take to open before start-up fails.
START_TIMEOUT_S = 30.0


class Notifier:
    """One notifier process's parts; `start()` opens the change stream then serves, `stop()`
    closes every connection with 1001 and ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.hub = Hub(self.store)
        self.follower = ChangeFollower(
            self.store.tasks, self.hub.publish_change, self.hub.resend_since
        )
        self.server: Server | None = None
        self._follow: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"ws://{self.settings.notifier_host}:{self.settings.notifier_port}{WS_PATH}"

    async def start(self) -> None:
        """Open the change stream, then accept connections: no change is missed in between."""
        self._follow = asyncio.create_task(self.follower.run())
        ready = asyncio.create_task(self.follower.ready.wait())
        done, _ = await asyncio.wait(
            {ready, self._follow}, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            await self._stop_following()
            raise RuntimeError(f"the change stream did not open within {START_TIMEOUT_S} s")
        ping_s = self.settings.ws_ping_interval_s
        self.server = await serve(
            self._handle,
            self.settings.notifier_host,
            self.settings.notifier_port,
            process_request=self._process_request,
            compression="deflate" if self.settings.ws_compression else None,
            max_size=self.settings.ws_max_message_bytes,
            max_queue=4,
            ping_interval=ping_s,
            ping_timeout=ping_s,
            close_timeout=CLOSE_TIMEOUT_S,
            server_header=None,
        )
        log.info("notifier serving %s", self.url)

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), stop following, close the store."""
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()
        await self._stop_following()
        await self.store.close()

    async def _stop_following(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follow

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return _plain(HTTPStatus.OK, "ok\n")
        if path != WS_PATH:
            return _plain(HTTPStatus.NOT_FOUND, f"not found; the WebSocket is at {WS_PATH}\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        # Until users exist, everyone is the development user; auth plugs in here.
        client = Client(ws, self.settings.dev_user, self.settings.ws_queue_limit)
        self.hub.add_client(client)
        client.start()
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    client.push_control(
                        error_message(
                            f"{PROBLEM}unsupported-frame", "binary frames are not accepted"
                        )
                    )
                    continue
                await self._serve_message(client, frame)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s failed", ws.remote_address)
            await ws.close(1011, "internal error: reconnect and resume")
        finally:
            self.hub.drop_client(client)
            await client.stop()

    async def _serve_message(self, client: Client, frame: str) -> None:
        try:
            message = parse(frame)
        except ProtocolError as exc:
            client.push_control(error_for(exc))
            return
        if isinstance(message, Subscribe):
            await self.hub.subscribe(client, message)
        elif isinstance(message, Unsubscribe):
            self.hub.unsubscribe(client, message.id)
        elif isinstance(message, Ping):
            client.push_control(pong_message(message.id))


def _plain(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers(
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return Response(status.value, status.phrase, headers, body)
