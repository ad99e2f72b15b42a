"""Parsing what clients send: the message models of the protocol. No sockets."""

from __future__ import annotations

import json

import pytest

from services.notifier.protocol import (
    AuthMessage,
    PingMessage,
    ProtocolError,
    SubscribeMessage,
    UnsubscribeMessage,
    parse,
)

T1 = "01900000-0000-7000-8000-000000000001"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"ping"}', PingMessage(type="ping", id=None)),
        ('{"type":"ping","id":"p1"}', PingMessage(type="ping", id="p1")),
        ('{"type":"unsubscribe","id":"s1"}', UnsubscribeMessage(type="unsubscribe", id="s1")),
        (
            f'{{"type":"subscribe","id":"s1","tasks":["{T1}"],"since":{{"{T1}":3}}}}',
            SubscribeMessage(type="subscribe", id="s1", tasks=[T1], since={T1: 3}),
        ),
        (
            '{"type":"subscribe","id":"s1","scope":"all"}',
            SubscribeMessage(type="subscribe", id="s1", scope="all"),
        ),
    ],
)
def test_well_formed_messages_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_repeated_task_ids_are_followed_once() -> None:
    message = parse(f'{{"type":"subscribe","id":"s1","tasks":["{T1}","{T1}"]}}')

    assert isinstance(message, SubscribeMessage)
    assert message.task_ids == (T1,)


def test_since_ts_is_read_as_an_aware_time() -> None:
    message = parse('{"type":"subscribe","id":"s","scope":"all","since_ts":"2025-01-02T03:04:05Z"}')
    naive = parse('{"type":"subscribe","id":"s","scope":"all","since_ts":"2025-01-02T03:04:05"}')

    assert isinstance(message, SubscribeMessage)
    assert isinstance(naive, SubscribeMessage)
    assert message.since_ts is not None
    assert message.since_ts.utcoffset() is not None
    assert naive.since_ts == message.since_ts


@pytest.mark.parametrize(
    ("text", "kind", "message_id"),
    [
        ("not json", "malformed-message", None),
        ("[1, 2]", "malformed-message", None),
        ('{"type":"shout","id":"x"}', "malformed-message", "x"),
        ('{"type":["subscribe"]}', "malformed-message", None),
        ('{"type":"subscribe","id":"s1"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[],"scope":"all"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[]}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[1]}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":null,"scope":"all"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"mine"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"all","since":{"a":"1"}}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"all","since_ts":"soon"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"all","since_ts":5}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"","scope":"all"}', "invalid-message", ""),
        ('{"type":"subscribe","id":7,"scope":"all"}', "invalid-message", None),
        ('{"type":"unsubscribe"}', "invalid-message", None),
        ('{"type":"ping","id":""}', "invalid-message", ""),
    ],
)
def test_bad_messages_name_their_problem(text: str, kind: str, message_id: str | None) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse(text)

    assert caught.value.problem_type == f"urn:tasklight:problem:{kind}"
    assert caught.value.message_id == message_id


def test_the_detail_names_the_member_that_is_wrong() -> None:
    with pytest.raises(ProtocolError) as neither:
        parse('{"type":"subscribe","id":"s1"}')
    with pytest.raises(ProtocolError) as item:
        parse('{"type":"subscribe","id":"s1","tasks":["a",2]}')

    assert neither.value.detail == "give exactly one of tasks and scope"
    assert item.value.detail.startswith("tasks.1: ")


def test_too_many_task_ids_are_refused() -> None:
    tasks = json.dumps([f"t{n}" for n in range(1001)])
    with pytest.raises(ProtocolError, match="at most 1000"):
        parse(f'{{"type":"subscribe","id":"s","tasks":{tasks}}}')


def test_the_auth_message_takes_a_ticket_or_a_token() -> None:
    assert parse('{"type": "auth", "ticket": "abc"}') == AuthMessage(type="auth", ticket="abc")
    assert parse('{"type": "auth", "token": "tl_x"}') == AuthMessage(type="auth", token="tl_x")
    for bad in (
        '{"type": "auth"}',
        '{"type": "auth", "ticket": "a", "token": "b"}',
        '{"type": "auth", "ticket": 5}',
        '{"type": "auth", "ticket": ""}',
        '{"type": "auth", "ticket": null, "token": "tl_x"}',
    ):
        with pytest.raises(ProtocolError):
            parse(bad)


def test_a_token_does_not_show_in_the_messages_repr() -> None:
    assert "tl_secret" not in repr(parse('{"type": "auth", "token": "tl_secret"}'))
