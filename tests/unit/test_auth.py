"""Credentials without a database: password hashes, principals, the `auth` message."""

from __future__ import annotations

import pytest

from services.notifier.protocol import Auth, ProtocolError, parse
from shared.auth import Principal, Role, check_password, hash_password, valid_user_name
from shared.ids import new_task_id, task_id_floor


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


def test_the_auth_message_takes_a_ticket_or_a_token() -> None:
    assert parse('{"type": "auth", "ticket": "abc"}') == Auth(ticket="abc")
    assert parse('{"type": "auth", "token": "tl_x"}') == Auth(ticket=None, token="tl_x")
    for bad in (
        '{"type": "auth"}',
        '{"type": "auth", "ticket": "a", "token": "b"}',
        '{"type": "auth", "ticket": 5}',
        '{"type": "auth", "ticket": ""}',
    ):
        with pytest.raises(ProtocolError):
            parse(bad)


def test_the_id_floor_sorts_below_every_id_created_from_then_on() -> None:
    import time

    floor = task_id_floor(time.time_ns() // 1_000_000)
    later = new_task_id()
    assert floor <= later
    assert task_id_floor(0) < floor
