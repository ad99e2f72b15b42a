"""Fan-out of one change: rendered once, one shared frame per subscription id, versions per
subscription. Against fakes of the notifier's connections (no sockets, no database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from services.notifier import hub as hub_module
from services.notifier.connection import Connection
from services.notifier.hub import Hub
from services.notifier.outbound import task_message
from services.notifier.sendqueue import SendQueue
from services.notifier.subscriptions import Subscription
from shared.records import StoredTask
from shared.store import Store

T1 = "01900000-0000-7000-8000-000000000001"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class Behind:
    """A connection that is behind: everything it accepts is queued."""

    def __init__(self, owner: str | None = "alice") -> None:
        self.owner = owner
        self.queue = SendQueue(limit=1000)
        self.queued: list[bytes] = []
        self.subs: dict[str, Any] = {}

    def writable_now(self) -> bool:
        return False

    def queue_update(self, sub_id: str, task_id: str, message: bytes) -> None:
        self.queued.append(message)


def doc(version: int, owner: str = "alice") -> StoredTask:
    return StoredTask.model_validate(
        {
            "_id": T1,
            "name": "test.count",
            "state": "running",
            "created_at": AT,
            "updated_at": AT,
            "owner": owner,
            "version": version,
        }
    )


def subscribed(hub: Hub, sub_id: str, owner: str | None = "alice") -> Behind:
    connection = Behind(owner)
    connection.queue.open_subscription(sub_id)
    sub = Subscription(cast(Connection, connection), sub_id, owner, None)
    hub.registry.add(sub)
    return connection


def test_one_change_is_rendered_once_and_shared_as_one_frame_by_every_subscriber(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    renders: list[str] = []
    real_render = hub_module.render

    def counting_render(stored: Any) -> bytes:
        renders.append(stored.id)
        return real_render(stored)

    monkeypatch.setattr(hub_module, "render", counting_render)
    hub = Hub(cast(Store, None))
    connections = [subscribed(hub, "s") for _ in range(1000)]

    hub.publish_task(doc(2))

    frames = [c.queued for c in connections]
    assert len(renders) == 1
    assert all(len(sent) == 1 for sent in frames)
    assert len({id(sent[0]) for sent in frames}) == 1
    assert frames[0][0] == task_message("s", real_render(doc(2)))


def test_each_subscription_id_gets_its_own_frame_and_its_own_versions() -> None:
    hub = Hub(cast(Store, None))
    first, second, admin = subscribed(hub, "a"), subscribed(hub, "b"), subscribed(hub, "a", None)
    bob = subscribed(hub, "a", "bob")
    second.queue.accept("b", T1, 3)  # it has version 3 already

    hub.publish_task(doc(2))
    hub.publish_task(doc(2))  # a repeat: stale everywhere

    assert [len(first.queued), len(second.queued), len(admin.queued), len(bob.queued)] == [
        1,
        0,
        1,
        0,
    ]
    assert first.queued[0] is admin.queued[0]
    hub.publish_task(doc(4))
    assert b'"sub":"b"' in second.queued[0]
    assert first.queued[1] is not second.queued[0]
