"""What one connection still has to send: a bounded, coalescing map of pending messages. No I/O.

Updates are keyed by (subscription, task): a newer state of a task that has not gone out yet
replaces the older one in place, so a slow connection gets fewer, newer states. Each subscription
remembers the highest version it accepted per task, so a task's versions only go up on the wire
(a stale change-stream event, a snapshot read before a change, a rebuild: all dropped here).
When the number of distinct pending messages reaches `limit`, the queue overflows: the caller
closes the connection (4000) and the connection resumes from the database.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from itertools import count

from services.notifier.protocol import deleted_message, task_message

#: Known versions of one subscription above which it forgets tasks that are finished.
_VERSIONS_SOFT_LIMIT = 4096


class Offer(Enum):
    """What became of an offered message."""

    #: A new pending message.
    QUEUED = "queued"
    #: Replaced an older pending state of the same task.
    COALESCED = "coalesced"
    #: Not above the version the subscription already has: dropped.
    STALE = "stale"
    #: The queue is (or just became) full: the connection must be closed.
    OVERFLOW = "overflow"
    #: The subscription is gone, or the queue was closed: dropped.
    IGNORED = "ignored"


class SendQueue:
    """The pending messages of one connection, in the order they were first queued."""

    __slots__ = ("_keys", "_pending", "_versions", "closed", "limit", "peak")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._pending: OrderedDict[object, str] = OrderedDict()
        #: subscription id → task id → highest version accepted.
        self._versions: dict[str, dict[str, int]] = {}
        self._keys = count()
        #: The most messages ever pending at once (for tests and metrics).
        self.peak = 0
        #: True once it overflowed or was closed: it accepts nothing more.
        self.closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def open_subscription(self, sub_id: str, since: dict[str, int] | None = None) -> None:
        """Start tracking a subscription; tasks at or below `since` versions are not sent."""
        self._versions[sub_id] = dict(since or {})

    def close_subscription(self, sub_id: str) -> None:
        """Forget a subscription and drop its pending updates."""
        self._versions.pop(sub_id, None)
        for key in [k for k in self._pending if isinstance(k, tuple) and k[0] == sub_id]:
            del self._pending[key]

    def holds(self, sub_id: str, task_id: str) -> bool:
        """Whether the subscription has accepted (or was told the connection has) the task."""
        return task_id in self._versions.get(sub_id, {})

    def offer_task(
        self, sub_id: str, task_id: str, version: int, task_json: str, *, final: bool = False
    ) -> Offer:
        """Queue a task state for a subscription unless it already has that version or newer.

        `final` says the state is a final one: it never changes again, so once the version map
        grows large the task may be forgotten.
        """
        versions = self._versions.get(sub_id)
        if versions is None or self.closed:
            return Offer.IGNORED
        if versions.get(task_id, 0) >= version:
            return Offer.STALE
        versions[task_id] = version
        if final and len(versions) > _VERSIONS_SOFT_LIMIT:
            # Only a repeat of this same final state could come later: harmless.
            del versions[task_id]
        return self._put((sub_id, task_id), task_message(sub_id, task_json))

    def offer_deleted(self, sub_id: str, task_id: str) -> Offer:
        """Queue a `deleted` message, if the subscription holds the task."""
        versions = self._versions.get(sub_id)
        if versions is None or self.closed or task_id not in versions:
            return Offer.IGNORED
        versions[task_id] = 1 << 62  # nothing about this task may follow its deletion
        return self._put((sub_id, task_id), deleted_message(sub_id, task_id))

    def offer_control(self, message: str) -> Offer:
        """Queue a message that is not a task update (pong, error, subscribed, unsubscribed)."""
        if self.closed:
            return Offer.IGNORED
        return self._put(next(self._keys), message)

    def pop(self) -> str | None:
        """The oldest pending message, or None."""
        if not self._pending:
            return None
        return self._pending.popitem(last=False)[1]

    def close(self) -> None:
        """Drop everything and accept nothing more."""
        self.closed = True
        self._pending.clear()
        self._versions.clear()

    def _put(self, key: object, message: str) -> Offer:
        coalesced = key in self._pending
        self._pending[key] = message
        size = len(self._pending)
        self.peak = max(self.peak, size)
        if size >= self.limit:
            self.close()
            return Offer.OVERFLOW
        return Offer.COALESCED if coalesced else Offer.QUEUED
