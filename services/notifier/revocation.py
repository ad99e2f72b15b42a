"""Revocation reaches open sockets: credentials checked again while their connections are open.

A connection is authenticated once, at its start. Every `interval_s` (half the token cache time,
`TASKLIGHT_TOKEN_CACHE_S`, so a revoked credential is noticed within that time) the notifier
reads, in three queries for all its connections, which of their tokens and sessions still
exist and which of their users still exist with the same role; a connection whose credential
went away is closed with 4403 (`CloseCode.REVOKED`). A ticket is used up when it opens a
connection: such a connection follows its user.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import TypeVar

from services.notifier.connection import Connection
from services.notifier.constants import CloseCode
from shared.auth import AuthStore
from shared.store import DatabaseError

log = logging.getLogger(__name__)

#: Shortest time between two checks, whatever the token cache time.
MIN_INTERVAL_S = 0.5
#: Credentials per `$in` query.
PER_QUERY = 1000

V = TypeVar("V")


def check_interval_s(token_cache_s: float) -> float:
    """Seconds between checks: half the token cache time, so one falls well within it."""
    return max(MIN_INTERVAL_S, token_cache_s / 2)


class RevocationCheck:
    """Closes the connections whose credentials were revoked, every `interval_s`."""

    def __init__(
        self,
        auth: AuthStore,
        connections: Callable[[], Collection[Connection]],
        interval_s: float,
    ) -> None:
        self.auth = auth
        self.connections = connections
        self.interval_s = interval_s

    async def run(self) -> None:
        """Check every `interval_s` until cancelled; a database error skips one round."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                revoked = await self.revoked(list(self.connections()))
            except DatabaseError as exc:
                log.warning("could not check credentials again: %r; next time", exc)
                continue
            for connection, why in revoked:
                log.info("closing %s: %s", connection.ws.remote_address, why)
                connection.close(CloseCode.REVOKED, f"{why}: sign in again")

    async def revoked(self, connections: Iterable[Connection]) -> list[tuple[Connection, str]]:
        """The connections whose credentials are gone, each with why."""
        open_ = [c for c in connections if not c.closing]
        tokens = await _chunked(
            self.auth.live_tokens, {c.credential.digest for c in open_ if _is(c, "token")}
        )
        sessions = await _chunked(
            self.auth.live_sessions, {c.credential.digest for c in open_ if _is(c, "session")}
        )
        roles = await _chunked(
            self.auth.roles, {c.principal.name for c in open_ if not c.principal.dev}
        )
        found: list[tuple[Connection, str]] = []
        for connection in open_:
            name, digest = connection.principal.name, connection.credential.digest or ""
            if _is(connection, "token") and tokens.get(digest) != name:
                found.append((connection, "the API token was revoked"))
            elif _is(connection, "session") and sessions.get(digest) != name:
                found.append((connection, "the session was signed out or expired"))
            elif not connection.principal.dev and roles.get(name) is not connection.principal.role:
                found.append((connection, f"user {name} was deleted or changed role"))
        return found


def _is(connection: Connection, kind: str) -> bool:
    return connection.credential.kind == kind and connection.credential.digest is not None


async def _chunked(
    lookup: Callable[[list[str]], Awaitable[dict[str, V]]], keys: set[str | None]
) -> dict[str, V]:
    found: dict[str, V] = {}
    ordered = sorted(k for k in keys if k is not None)
    for start in range(0, len(ordered), PER_QUERY):
        found |= await lookup(ordered[start : start + PER_QUERY])
    return found
