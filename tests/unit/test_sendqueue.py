"""What a slow connection keeps, and what each subscription has: the send queue. No sockets."""

from __future__ import annotations

import json

from services.notifier.outbound import deleted_message, task_message
from services.notifier.sendqueue import Offer, SendQueue

T1 = "01900000-0000-7000-8000-000000000001"
T2 = "01900000-0000-7000-8000-000000000002"


def offer(queue: SendQueue, sub_id: str, task_id: str, version: int) -> Offer:
    """Accept and queue a task state, as the hub does for a connection that is behind."""
    accepted = queue.accept(sub_id, task_id, version)
    if accepted is not Offer.ACCEPTED:
        return accepted
    body = json.dumps({"id": task_id, "version": version}).encode()
    return queue.put_update(sub_id, task_id, task_message(sub_id, body))


def delete(queue: SendQueue, sub_id: str, task_id: str) -> Offer:
    accepted = queue.accept_deleted(sub_id, task_id)
    if accepted is not Offer.ACCEPTED:
        return accepted
    return queue.put_update(sub_id, task_id, deleted_message(sub_id, task_id))


def drain(queue: SendQueue) -> list[dict[str, object]]:
    messages = []
    while (message := queue.pop()) is not None:
        messages.append(json.loads(message))
    return messages


def test_versions_only_go_up_per_subscription_and_task() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")

    assert offer(queue, "s1", T1, 3) is Offer.QUEUED
    assert offer(queue, "s1", T1, 2) is Offer.STALE
    assert offer(queue, "s1", T1, 3) is Offer.STALE
    assert offer(queue, "s2", T1, 2) is Offer.QUEUED

    sent = [(m["sub"], m["task"]["version"]) for m in drain(queue)]  # type: ignore[index]
    assert sent == [("s1", 3), ("s2", 2)]
    assert offer(queue, "s1", T1, 3) is Offer.STALE


def test_a_newer_state_replaces_a_pending_one_in_its_place() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    offer(queue, "s1", T1, 1)
    offer(queue, "s1", T2, 1)

    assert offer(queue, "s1", T1, 5) is Offer.COALESCED

    sent = [(m["task"]["id"], m["task"]["version"]) for m in drain(queue)]  # type: ignore[index]
    assert sent == [(T1, 5), (T2, 1)]
    assert queue.bytes == 0


def test_since_versions_are_not_sent_again() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1", since={T1: 4})

    assert queue.accept("s1", T1, 4) is Offer.STALE
    assert queue.accept("s1", T1, 5) is Offer.ACCEPTED


def test_reaching_the_limit_of_distinct_pending_messages_overflows_and_frees_everything() -> None:
    queue = SendQueue(limit=4)
    queue.open_subscription("s1")
    for n in range(3):
        assert offer(queue, "s1", f"task-{n}", 1) is Offer.QUEUED
        # Coalescing never counts against the limit.
        assert offer(queue, "s1", f"task-{n}", 2) is Offer.COALESCED

    assert queue.put_control(b'{"type":"pong"}') is Offer.OVERFLOW

    assert queue.closed
    assert len(queue) == 0
    assert queue.peak == 4
    assert offer(queue, "s1", "task-9", 1) is Offer.IGNORED


def test_more_bytes_pending_than_the_bound_overflow_and_free_everything() -> None:
    queue = SendQueue(limit=1000, limit_bytes=1000)
    queue.open_subscription("s1")
    blob = b"x" * 400

    assert queue.put_update("s1", T1, blob) is Offer.QUEUED
    # A newer state of the same task replaces the older one's bytes, it does not add to them.
    assert queue.put_update("s1", T1, blob) is Offer.COALESCED
    assert queue.put_update("s1", T2, blob) is Offer.QUEUED
    assert queue.bytes == 800
    assert not queue.has_room()

    assert queue.put_control(blob) is Offer.OVERFLOW
    assert queue.closed
    assert queue.bytes == 0
    assert queue.peak_bytes == 1200


def test_one_message_alone_never_overflows_on_bytes() -> None:
    queue = SendQueue(limit=1000, limit_bytes=1000)

    assert queue.put_control(b"x" * 5000) is Offer.QUEUED
    assert queue.pop() == b"x" * 5000
    assert queue.has_room()


def test_deleted_goes_only_to_subscriptions_holding_the_task_and_nothing_follows_it() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")
    offer(queue, "s1", T1, 1)

    assert delete(queue, "s1", T1) is Offer.COALESCED
    assert delete(queue, "s2", T1) is Offer.IGNORED
    assert offer(queue, "s1", T1, 2) is Offer.STALE
    assert drain(queue) == [{"type": "deleted", "sub": "s1", "id": T1}]


def test_a_task_claimed_in_since_gets_no_deleted_until_it_is_seen_to_be_visible() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1", since={T1: 3, T2: 3})

    # What the client claims is no proof the task is its own: no `deleted` for it.
    assert queue.accept_deleted("s1", T1) is Offer.IGNORED
    assert queue.claimed("s1") == {T1, T2}
    # Offered, so visible: confirmed, and still deduplicated by the claimed version.
    assert queue.accept("s1", T1, 3) is Offer.STALE
    assert queue.holds("s1", T1)
    # The rest is settled by what the database says the subscription may see.
    queue.settle_claims("s1", visible=set())

    assert queue.claimed("s1") == set()
    assert not queue.holds("s1", T2)
    assert queue.accept_deleted("s1", T2) is Offer.IGNORED
    assert queue.accept_deleted("s1", T1) is Offer.ACCEPTED


def test_a_settled_claim_keeps_its_version() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1", since={T1: 7})

    queue.settle_claims("s1", visible={T1})

    assert queue.holds("s1", T1)
    assert queue.accept("s1", T1, 7) is Offer.STALE
    assert queue.accept("s1", T1, 8) is Offer.ACCEPTED


def test_closing_a_subscription_drops_its_pending_updates_only() -> None:
    queue = SendQueue(limit=100)
    queue.open_subscription("s1")
    queue.open_subscription("s2")
    offer(queue, "s1", T1, 1)
    offer(queue, "s2", T1, 1)

    queue.close_subscription("s1")

    assert offer(queue, "s1", T1, 2) is Offer.IGNORED
    assert [m["sub"] for m in drain(queue)] == ["s2"]
    assert not queue.holds("s1", T1)
    assert queue.holds("s2", T1)
    assert queue.bytes == 0
