"""Credentials without a database: password hashes, principals, the `auth` message."""

from __future__ import annotations

import asyncio

import pytest

from shared.auth import (
    AuthStore,
    Principal,
    Role,
    check_password,
    hash_password,
    valid_user_name,
)
from shared.ids import new_task_id, task_id_floor
from shared.store.accounts import Accounts


def test_a_password_hash_checks_its_password_and_no_other() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$")
    assert "correct horse" not in stored
    assert check_password("correct horse", stored)
    assert not check_password("correct hors", stored)
    assert not check_password("correct horse", "not-a-hash")
    # Salted: the same password hashes differently each time.
    assert hash_password("correct horse") != stored


def test_users_see_their_own_tasks_and_admins_all() -> None:
    alice = Principal("alice", Role.USER)
    root = Principal("root", Role.ADMIN)
    assert alice.owner_filter == "alice"
    assert alice.may_see("alice")
    assert not alice.may_see("bob")
    assert root.owner_filter is None
    assert root.may_see("bob")


@pytest.mark.parametrize("name", ["alice", "a.b-c_d", "x" * 64, "0day"])
def test_allowed_user_names(name: str) -> None:
    assert valid_user_name(name)


@pytest.mark.parametrize("name", ["", "Alice", "-x", "a b", "x" * 65, "a/b", "é"])
def test_refused_user_names(name: str) -> None:
    assert not valid_user_name(name)


def test_the_id_floor_sorts_below_every_id_created_from_then_on() -> None:
    import time

    floor = task_id_floor(time.time_ns() // 1_000_000)
    later = new_task_id()
    assert floor <= later
    assert task_id_floor(0) < floor


async def test_requests_with_the_same_token_share_one_look_up_when_the_cache_runs_out() -> None:
    class CountingAccounts(Accounts):
        def __init__(self) -> None:
            self.lookups = 0

        async def token_user(self, digest: str) -> str | None:
            self.lookups += 1
            await asyncio.sleep(0.01)  # the database's answer takes a while
            return "alice"

        async def roles(self, names: list[str]) -> dict[str, str]:
            return {"alice": "user"}

    accounts = CountingAccounts()
    auth = AuthStore(accounts, token_cache_s=10)
    principals = await asyncio.gather(*(auth.by_token("tl_same") for _ in range(16)))
    assert {p.name for p in principals if p} == {"alice"}
    assert accounts.lookups == 1
