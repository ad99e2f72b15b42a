"""The notifier's composition root: settings → store, task stream, hub → WebSocket server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from services.notifier.connection import Connection, Credential, Limits
from services.notifier.constants import CloseCode
from services.notifier.hub import Hub
from services.notifier.outbound import (
    authenticated_message,
    error_for,
    error_message,
    pong_message,
)
from services.notifier.protocol import (
    PROBLEM,
    AuthMessage,
    PingMessage,
    ProtocolError,
    SubscribeMessage,
    UnsubscribeMessage,
    parse,
)
from services.notifier.revocation import RevocationCheck, check_interval_s
from shared import metrics
from shared.auth import SESSION_COOKIE, AuthStore, Principal, bearer_token, credential_digest
from shared.probes import ProbeServer
from shared.settings import Settings
from shared.store import open_store
from shared.store.task_stream import TaskStream

log = logging.getLogger(__name__)

WS_PATH = "/ws"
#: Seconds a closing handshake may take before the TCP connection is dropped.
CLOSE_TIMEOUT_S = 5.0
#: Seconds the first change stream may take to open before start-up fails.
START_TIMEOUT_S = 30.0
#: On every plain HTTP answer (health, 404, refused handshakes): none is a page, so nothing may
#: load in it, frame it, take a referrer from it, or read it as anything but what it says.
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    (
        "Content-Security-Policy",
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
)


class Notifier:
    """One notifier process's parts; `start()` opens the change stream then serves, `stop()`
    closes every connection with 1001 and ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.auth = AuthStore(
            self.store.accounts,
            dev_mode=settings.dev_mode,
            ticket_ttl_s=settings.ws_ticket_ttl_s,
            token_cache_s=settings.token_cache_s,
        )
        self.hub = Hub(self.store, max_subscriptions=settings.ws_max_subscriptions)
        self.origins = settings.origins()
        #: Open connections per user, for `ws_max_connections_per_user`.
        self.connections: Counter[str] = Counter()
        self.follower = TaskStream(self.store.tasks, self.hub.publish_change, self.hub.resend_since)
        self.limits = Limits(
            messages=settings.ws_queue_limit,
            bytes=settings.ws_queue_limit_bytes,
            drain_timeout_s=settings.ws_drain_timeout_s,
        )
        self.revocation = RevocationCheck(
            self.auth, lambda: self.hub.connections, check_interval_s(settings.token_cache_s)
        )
        #: /metrics for operators, on a port of its own: users reach the notifier's port.
        self.probes = ProbeServer(
            settings.notifier_host,
            settings.notifier_metrics_port,
            {"database": self.store.ping},
            registry=metrics.NOTIFIER_REGISTRY,
            service="notifier",
        )
        self.server: Server | None = None
        self._follow: asyncio.Task[None] | None = None
        self._revoke: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"ws://{self.settings.notifier_host}:{self.settings.notifier_port}{WS_PATH}"

    async def start(self) -> None:
        """Check the schema, open the change stream, then accept connections: no change is
        missed in between."""
        # Like every service: refuse a database this version has not migrated (its queries
        # assume the indexes) with an error that says to run the migration.
        await self.store.require_schema()
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
            process_response=_with_security_headers,
            compression="deflate" if self.settings.ws_compression else None,
            max_size=self.settings.ws_max_message_bytes,
            max_queue=4,
            ping_interval=ping_s,
            ping_timeout=ping_s,
            close_timeout=CLOSE_TIMEOUT_S,
            server_header=None,
        )
        self._revoke = asyncio.create_task(self.revocation.run())
        await self._start_probes()
        log.info("notifier serving %s", self.url)

    async def _start_probes(self) -> None:
        # Not fatal, as for the api: the notifier serves its users without its metrics port.
        try:
            await self.probes.start()
        except OSError as exc:
            log.error(
                "notifier metrics not served: cannot listen on %s:%d (%s); "
                "set TASKLIGHT_NOTIFIER_METRICS_PORT",
                self.probes.host,
                self.probes.port,
                exc,
            )

    async def stop(self) -> None:
        """Close every connection with 1001 (going away), stop following, close the store."""
        await self.probes.stop()
        if self._revoke is not None:
            self._revoke.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revoke
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
        # Not /metrics: that is for operators, on `probes`' port.
        if path != WS_PATH:
            return _plain(HTTPStatus.NOT_FOUND, f"not found; the WebSocket is at {WS_PATH}\n")
        # A browser always names the page's origin. Another site's page must not open a socket
        # that the browser authenticates with our cookie (cross-site WebSocket hijacking).
        # Scripts send no Origin; they authenticate with a token and are not at risk.
        origins = request.headers.get_all("Origin")
        if len(origins) > 1:
            return _plain(HTTPStatus.BAD_REQUEST, "the Origin header must be sent once\n")
        origin = origins[0] if origins else None
        if origin is not None and origin.rstrip("/") not in self.origins:
            log.warning("refused a WebSocket from origin %r", origin)
            return _plain(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        authenticated = await self._authenticate(ws)
        if authenticated is None:
            return
        principal, credential = authenticated
        limit = self.settings.ws_max_connections_per_user
        if self.connections[principal.name] >= limit:
            await ws.close(
                CloseCode.TOO_MANY_CONNECTIONS, f"{principal.name} has {limit} connections open"
            )
            return
        self.connections[principal.name] += 1
        try:
            await self._serve(ws, principal, credential)
        finally:
            self.connections[principal.name] -= 1
            if self.connections[principal.name] <= 0:
                del self.connections[principal.name]

    async def _authenticate(self, ws: ServerConnection) -> tuple[Principal, Credential] | None:
        """Who the connection acts as, and by what credential, from its handshake or else its
        first message; None (and the connection closed with 4401) when that fails."""
        assert ws.request is not None
        headers = ws.request.headers
        authorization = headers.get_all("Authorization")
        if authorization:
            token = bearer_token(authorization[0]) if len(authorization) == 1 else None
            principal = None if token is None else await self.auth.by_token(token)
            if principal is None or token is None:
                await ws.close(CloseCode.UNAUTHORIZED, "the API token is not valid")
                return None
            return principal, _token_credential(principal, token)
        secret = _session_secret(headers.get_all("Cookie"))
        if secret is not None:
            session = await self.auth.by_session(secret)
            if session is not None:
                return session.principal, Credential("session", credential_digest(secret))
        # No credentials the browser could send: the first message must be `auth`.
        try:
            async with asyncio.timeout(self.settings.ws_auth_timeout_s):
                frame = await ws.recv()
        except TimeoutError:
            await ws.close(CloseCode.UNAUTHORIZED, "authenticate first: send an auth message")
            return None
        except ConnectionClosed:
            return None
        try:
            message = parse(frame) if isinstance(frame, str) else None
        except ProtocolError:
            message = None
        if not isinstance(message, AuthMessage):
            await ws.close(CloseCode.UNAUTHORIZED, "authenticate first: send an auth message")
            return None
        if message.ticket is not None:
            principal = await self.auth.redeem_ticket(message.ticket)
            credential = Credential("ticket")
        else:
            assert message.token is not None
            principal = await self.auth.by_token(message.token)
            credential = Credential("token", credential_digest(message.token))
        if principal is None:
            await ws.close(CloseCode.UNAUTHORIZED, "the ticket or token is not valid (or used up)")
            return None
        await ws.send(authenticated_message(principal.name, principal.role.value), text=True)
        if principal.dev:
            credential = Credential("dev")
        return principal, credential

    async def _serve(
        self, ws: ServerConnection, principal: Principal, credential: Credential
    ) -> None:
        connection = Connection(ws, principal, self.limits, credential)
        self.hub.add_connection(connection)
        try:
            async for frame in ws:
                if isinstance(frame, bytes):
                    connection.send(
                        error_message(
                            f"{PROBLEM}unsupported-frame", "binary frames are not accepted"
                        )
                    )
                    continue
                await self._serve_message(connection, frame)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s failed", ws.remote_address)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error: reconnect and resume")
        finally:
            self.hub.drop_connection(connection)
            await connection.stop()

    async def _serve_message(self, connection: Connection, frame: str) -> None:
        try:
            message = parse(frame)
        except ProtocolError as exc:
            connection.send(error_for(exc))
            return
        if isinstance(message, SubscribeMessage):
            await self.hub.subscribe(connection, message)
        elif isinstance(message, UnsubscribeMessage):
            self.hub.unsubscribe(connection, message.id)
        elif isinstance(message, PingMessage):
            connection.send(pong_message(message.id))
        elif isinstance(message, AuthMessage):
            connection.send(
                error_message(
                    f"{PROBLEM}already-authenticated", "this connection is authenticated already"
                )
            )


def _token_credential(principal: Principal, token: str) -> Credential:
    # The development token is not stored: it is valid for as long as development mode is on.
    return Credential("dev") if principal.dev else Credential("token", credential_digest(token))


def _session_secret(cookie_headers: list[str]) -> str | None:
    cookies: SimpleCookie = SimpleCookie()
    for header in cookie_headers:
        try:
            cookies.load(header)
        except CookieError:
            return None
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def _plain(status: HTTPStatus, text: str) -> Response:
    body = text.encode()
    headers = Headers(
        [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    )
    return Response(status.value, status.phrase, headers, body)


def _with_security_headers(
    connection: ServerConnection, request: Request, response: Response
) -> None:
    """Give every answer but the switch to WebSocket `SECURITY_HEADERS`: the ones `_plain`
    makes, and the refusals websockets makes itself (a GET of /ws without an upgrade)."""
    if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
        for name, value in SECURITY_HEADERS:
            response.headers[name] = value
