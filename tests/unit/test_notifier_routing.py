"""Who gets an update, and what a slow connection keeps: the notifier's pure core, no sockets."""

from __future__ import annotations

import json

import pytest

from services.notifier.protocol import (
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    error_message,
    parse,
)
from services.notifier.sendqueue import Offer, SendQueue
from services.notifier.subscriptions import Subscription, SubscriptionRegistry

T1 = "01900000-0000-7000-8000-000000000001"
T2 = "01900000-0000-7000-8000-000000000002"


def sub(
    connection: str, sub_id: str, owner: str = "dev", tasks: set[str] | None = None
) -> Subscription[str]:
    return Subscription(connection, sub_id, owner, None if tasks is None else frozenset(tasks))


def ids(subs: object) -> set[tuple[str, str]]:
    return {(s.connection, s.sub_id) for s in subs}  # type: ignore[attr-defined]


# Matching


def test_a_change_reaches_the_subscriptions_naming_the_task_and_the_owners_scope_all() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("b", "s1", tasks={T2}))
    registry.add(sub("c", "all"))
    registry.add(sub("d", "all", owner="eve"))

    assert ids(registry.matching(T1, "dev")) == {("a", "s1"), ("c", "all")}
    assert ids(registry.matching(T2, "dev")) == {("b", "s1"), ("c", "all")}


def test_a_task_of_another_owner_reaches_nobody_even_a_subscription_naming_it() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("c", "all"))

    assert ids(registry.matching(T1, "eve")) == set()


def test_removed_and_narrowed_subscriptions_get_nothing_more() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    one, every = sub("a", "s1", tasks={T1, T2}), sub("a", "all")
    registry.add(one)
    registry.add(every)
    assert len(registry) == 2

    registry.narrow(one, {T2})
    registry.remove(every)
    registry.remove(every)  # twice is harmless

    assert ids(registry.matching(T1, "dev")) == {("a", "s1")}
    assert ids(registry.matching(T2, "dev")) == set()
    assert len(registry) == 1
    registry.remove(one)
    assert len(registry) == 0
    assert registry.task_ids() == set()


def test_deletes_are_offered_to_every_subscription_that_may_hold_the_task() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(sub("a", "s1", tasks={T1}))
    registry.add(sub("b", "s1", tasks={T2}))
    registry.add(sub("c", "all", owner="eve"))

    assert ids(registry.following(T1)) == {("a", "s1"), ("c", "all")}
    assert registry.scope_all_owners() == {"eve"}


# The queue


def task_json(task_id: str, version: int) -> str:
    return json.dumps({"id": task_id, "version": version})


def drain(queue: SendQueue) -> list[dict[str, object]]:
    messages = []
    while (message := queue.pop()) is not None:
        messages.append(json.loads(message))
    return messages


def test_versions_only_go_up_per_subscription_and_task() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")

    assert queue.offer_task("s1", T1, 3, task_json(T1, 3)) is Offer.QUEUED
    assert queue.offer_task("s1", T1, 2, task_json(T1, 2)) is Offer.STALE
    assert queue.offer_task("s1", T1, 3, task_json(T1, 3)) is Offer.STALE
    assert queue.offer_task("s2", T1, 2, task_json(T1, 2)) is Offer.QUEUED

    sent = [(m["sub"], m["task"]["version"]) for m in drain(queue)]  # type: ignore[index]
    assert sent == [("s1", 3), ("s2", 2)]
    assert queue.offer_task("s1", T1, 3, task_json(T1, 3)) is Offer.STALE


def test_a_newer_state_replaces_a_pending_one_in_its_place() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.offer_task("s1", T1, 1, task_json(T1, 1))
    queue.offer_task("s1", T2, 1, task_json(T2, 1))

    assert queue.offer_task("s1", T1, 5, task_json(T1, 5)) is Offer.COALESCED

    sent = [(m["task"]["id"], m["task"]["version"]) for m in drain(queue)]  # type: ignore[index]
    assert sent == [(T1, 5), (T2, 1)]


def test_since_versions_are_not_sent_again() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1", since={T1: 4})

    assert queue.offer_task("s1", T1, 4, task_json(T1, 4)) is Offer.STALE
    assert queue.offer_task("s1", T1, 5, task_json(T1, 5)) is Offer.QUEUED


def test_reaching_the_limit_of_distinct_pending_messages_overflows_and_frees_everything() -> None:
    queue = SendQueue(limit=4)
    queue.open_subscription("s1")
    for n in range(3):
        assert queue.offer_task("s1", f"task-{n}", 1, "{}") is Offer.QUEUED
        # Coalescing never counts against the limit.
        assert queue.offer_task("s1", f"task-{n}", 2, "{}") is Offer.COALESCED

    assert queue.offer_control('{"type":"pong"}') is Offer.OVERFLOW

    assert queue.closed
    assert len(queue) == 0
    assert queue.peak == 4
    assert queue.offer_task("s1", "task-9", 1, "{}") is Offer.IGNORED


def test_deleted_goes_only_to_subscriptions_holding_the_task_and_nothing_follows_it() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")
    queue.offer_task("s1", T1, 1, task_json(T1, 1))

    assert queue.offer_deleted("s1", T1) is Offer.COALESCED
    assert queue.offer_deleted("s2", T1) is Offer.IGNORED
    assert queue.offer_task("s1", T1, 2, task_json(T1, 2)) is Offer.STALE
    assert drain(queue) == [{"type": "deleted", "sub": "s1", "id": T1}]


def test_closing_a_subscription_drops_its_pending_updates_only() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")
    queue.offer_task("s1", T1, 1, task_json(T1, 1))
    queue.offer_task("s2", T1, 1, task_json(T1, 1))

    queue.close_subscription("s1")

    assert queue.offer_task("s1", T1, 2, task_json(T1, 2)) is Offer.IGNORED
    assert [m["sub"] for m in drain(queue)] == ["s2"]
    assert not queue.holds("s1", T1)
    assert queue.holds("s2", T1)


# Parsing connection messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type":"ping"}', Ping(id=None)),
        ('{"type":"ping","id":"p1"}', Ping(id="p1")),
        ('{"type":"unsubscribe","id":"s1"}', Unsubscribe(id="s1")),
        (
            f'{{"type":"subscribe","id":"s1","tasks":["{T1}","{T1}"],"since":{{"{T1}":3}}}}',
            Subscribe(id="s1", task_ids=(T1,), since={T1: 3}),
        ),
        ('{"type":"subscribe","id":"s1","scope":"all"}', Subscribe(id="s1", task_ids=None)),
    ],
)
def test_well_formed_messages_parse(text: str, expected: object) -> None:
    assert parse(text) == expected


def test_since_ts_is_read_as_an_aware_time() -> None:
    message = parse('{"type":"subscribe","id":"s","scope":"all","since_ts":"2025-01-02T03:04:05Z"}')

    assert isinstance(message, Subscribe)
    assert message.since_ts is not None
    assert message.since_ts.utcoffset() is not None


@pytest.mark.parametrize(
    ("text", "kind", "message_id"),
    [
        ("not json", "malformed-message", None),
        ("[1, 2]", "malformed-message", None),
        ('{"type":"shout","id":"x"}', "malformed-message", "x"),
        ('{"type":"subscribe","id":"s1"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[],"scope":"all"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[]}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","tasks":[1]}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"mine"}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"all","since":{"a":"1"}}', "invalid-message", "s1"),
        ('{"type":"subscribe","id":"s1","scope":"all","since_ts":"soon"}', "invalid-message", "s1"),
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


def test_too_many_task_ids_are_refused() -> None:
    tasks = json.dumps([f"t{n}" for n in range(1001)])
    with pytest.raises(ProtocolError, match="1 to 1000"):
        parse(f'{{"type":"subscribe","id":"s","tasks":{tasks}}}')


def test_error_messages_carry_problem_details() -> None:
    message = json.loads(
        error_message("urn:tasklight:problem:not-found", "no task x", "s1", tasks=["x"])
    )

    assert message == {
        "type": "error",
        "id": "s1",
        "problem": {
            "type": "urn:tasklight:problem:not-found",
            "title": "Not found",
            "status": 404,
            "detail": "no task x",
            "tasks": ["x"],
        },
    }


def test_an_admin_subscription_gets_every_owners_changes() -> None:
    registry: SubscriptionRegistry[str] = SubscriptionRegistry()
    registry.add(Subscription("admin", "all", None, None))
    registry.add(Subscription("admin", "ids", None, frozenset({T1})))
    registry.add(sub("eve", "all", owner="eve"))
    assert ids(registry.matching(T1, "dev")) == {("admin", "all"), ("admin", "ids")}
    assert ids(registry.matching(T2, "eve")) == {("admin", "all"), ("eve", "all")}
    assert registry.scope_all_owners() == {None, "eve"}
