"""Which open connections lost their credentials: the notifier's revocation check, against a
fake of the accounts it asks (no database)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from services.notifier.connection import Connection, Credential
from services.notifier.constants import CloseCode
from services.notifier.revocation import RevocationCheck, check_interval_s
from shared.auth import AuthStore, Principal, Role
from tests.support import eventually


@dataclass
class Accounts:
    """What the database holds: live token and session digests → user, users → role."""

    tokens: dict[str, str] = field(default_factory=dict)
    sessions: dict[str, str] = field(default_factory=dict)
    users: dict[str, Role] = field(default_factory=dict)
    asked: list[tuple[str, list[str]]] = field(default_factory=list)

    async def live_tokens(self, digests: list[str]) -> dict[str, str]:
        self.asked.append(("tokens", digests))
        return {d: self.tokens[d] for d in digests if d in self.tokens}

    async def live_sessions(self, digests: list[str]) -> dict[str, str]:
        self.asked.append(("sessions", digests))
        return {d: self.sessions[d] for d in digests if d in self.sessions}

    async def roles(self, names: list[str]) -> dict[str, Role]:
        self.asked.append(("users", names))
        return {n: self.users[n] for n in names if n in self.users}


@dataclass
class Open:
    """A connection as the check sees it."""

    principal: Principal
    credential: Credential
    closing: bool = False
    closed_with: list[CloseCode] = field(default_factory=list)
    ws: Any = field(default_factory=lambda: SimpleNamespace(remote_address=("127.0.0.1", 1)))

    def close(self, code: CloseCode, reason: str) -> None:
        self.closed_with.append(code)
        self.closing = True


def alice(kind: str = "token", digest: str | None = "t-alice", role: Role = Role.USER) -> Open:
    return Open(Principal("alice", role), Credential(kind, digest))


def check(accounts: Accounts, connections: list[Open]) -> RevocationCheck:
    return RevocationCheck(
        cast(AuthStore, accounts), lambda: cast(list[Connection], connections), 0.01
    )


async def revoked(accounts: Accounts, connections: list[Open]) -> list[str]:
    found = await check(accounts, connections).revoked(cast(list[Connection], connections))
    return [why for _, why in found]


async def test_live_credentials_of_existing_users_are_kept() -> None:
    accounts = Accounts(tokens={"t-alice": "alice"}, sessions={"s-alice": "alice"})
    accounts.users["alice"] = Role.USER

    assert (
        await revoked(accounts, [alice(), alice("session", "s-alice"), alice("ticket", None)]) == []
    )


async def test_a_revoked_token_a_closed_session_a_deleted_user_and_a_new_role_are_revoked() -> None:
    accounts = Accounts(tokens={"t-alice": "alice"}, users={"alice": Role.USER})

    assert await revoked(accounts, [alice(digest="t-gone")]) == ["the API token was revoked"]
    assert await revoked(accounts, [alice("session", "s-gone")]) == [
        "the session was signed out or expired"
    ]
    assert await revoked(accounts, [alice(role=Role.ADMIN)]) == [
        "user alice was deleted or changed role"
    ]
    del accounts.users["alice"]
    assert (
        await revoked(accounts, [alice(), alice("ticket", None)])
        == ["user alice was deleted or changed role"] * 2
    )


async def test_a_token_now_of_another_user_is_revoked() -> None:
    accounts = Accounts(tokens={"t-alice": "bob"}, users={"alice": Role.USER, "bob": Role.USER})

    assert await revoked(accounts, [alice()]) == ["the API token was revoked"]


async def test_development_credentials_and_closing_connections_are_not_asked_about() -> None:
    accounts = Accounts()
    dev = Open(Principal("dev", Role.USER, dev=True), Credential("dev"))
    leaving = alice()
    leaving.closing = True

    assert await revoked(accounts, [dev, leaving]) == []
    assert all(keys == [] for _, keys in accounts.asked)


async def test_the_check_closes_revoked_connections_with_4403_and_keeps_the_others() -> None:
    accounts = Accounts(tokens={"t-alice": "alice"}, users={"alice": Role.USER})
    kept, gone = alice(), alice(digest="t-revoked")
    running = asyncio.create_task(check(accounts, [kept, gone]).run())
    try:
        await eventually(lambda: _value(gone.closed_with), bool, timeout_s=5)
    finally:
        running.cancel()

    assert gone.closed_with == [CloseCode.REVOKED]
    assert kept.closed_with == []


async def _value(value: Any) -> Any:
    return value


def test_the_check_runs_twice_within_the_token_cache_time() -> None:
    assert check_interval_s(10.0) == 5.0
    assert check_interval_s(0.0) > 0
