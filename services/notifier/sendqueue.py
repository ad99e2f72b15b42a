"""What one connection still has to send, and what each of its subscriptions already has. No I/O.

Pending messages are keyed by (subscription, task): a newer state of a task that has not gone
out yet replaces the older one in place, so a slow client gets fewer, newer states. The queue is
bounded twice: in distinct messages (`limit`) and in bytes (`limit_bytes`); reaching either makes
it overflow, and the caller closes the connection (4000), after which the client resumes from
the database. The messages are the frames' bytes, often shared with other connections (a frame
is built once per change), so a queue's bytes are an upper bound of what it alone holds.

Each subscription remembers the highest version it accepted per task, so a task's versions only
go up on the wire (a stale change-stream event, a snapshot read before a change, a rebuild: all
dropped here). The versions a client says it holds (`since`) are kept apart until the notifier
has seen the task is one the subscription may see: a `deleted` goes only to a subscription that
has seen its task, so naming another user's task in `since` tells nothing about it.
"""

from __future__ import annotations

from collections import OrderedDict
from enum import Enum
from itertools import count

#: Known versions of one subscription above which it forgets tasks that are finished.
_VERSIONS_SOFT_LIMIT = 4096
#: The version a deleted task is marked with: nothing about it may follow its deletion.
_DELETED = 1 << 62


class Offer(Enum):
    """What became of an offered message."""

    #: To be sent: the caller writes it now or queues it.
    ACCEPTED = "accepted"
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


class _Seen:
    """One subscription's versions: those it accepted, and those its client claimed."""

    __slots__ = ("claimed", "versions")

    def __init__(self, claimed: dict[str, int]) -> None:
        #: task id → highest version accepted (the task is one the subscription may see).
        self.versions: dict[str, int] = {}
        #: task id → the version the client said it holds, not yet confirmed visible.
        self.claimed = claimed


class SendQueue:
    """The pending messages of one connection, in the order they were first queued."""

    __slots__ = (
        "_keys",
        "_pending",
        "_seen",
        "bytes",
        "closed",
        "limit",
        "limit_bytes",
        "peak",
        "peak_bytes",
    )

    def __init__(self, limit: int, limit_bytes: int = 1 << 62) -> None:
        self.limit = limit
        self.limit_bytes = limit_bytes
        self._pending: OrderedDict[object, bytes] = OrderedDict()
        self._seen: dict[str, _Seen] = {}
        self._keys = count()
        #: Bytes of the pending messages (0 exactly when none is pending: none is empty).
        self.bytes = 0
        #: The most messages, and bytes, ever pending at once (for tests and metrics).
        self.peak = 0
        self.peak_bytes = 0
        #: True once it overflowed or was closed: it accepts nothing more.
        self.closed = False

    def __len__(self) -> int:
        return len(self._pending)

    def has_room(self) -> bool:
        """Whether at most half of either bound is used (initial states wait for this)."""
        return len(self._pending) < self.limit // 2 and self.bytes < self.limit_bytes // 2

    # Subscriptions and their versions.

    def open_subscription(self, sub_id: str, since: dict[str, int] | None = None) -> None:
        """Start tracking a subscription; tasks at or below `since` versions are not sent."""
        self._seen[sub_id] = _Seen(dict(since or {}))

    def close_subscription(self, sub_id: str) -> None:
        """Forget a subscription and drop its pending updates."""
        self._seen.pop(sub_id, None)
        for key in [k for k in self._pending if isinstance(k, tuple) and k[0] == sub_id]:
            self.bytes -= len(self._pending.pop(key))

    def holds(self, sub_id: str, task_id: str) -> bool:
        """Whether the subscription has accepted the task (so it is one it may see)."""
        seen = self._seen.get(sub_id)
        return seen is not None and task_id in seen.versions

    def claimed(self, sub_id: str) -> set[str]:
        """The task ids the client claimed in `since` whose visibility is not yet known."""
        seen = self._seen.get(sub_id)
        return set() if seen is None else set(seen.claimed)

    def settle_claims(self, sub_id: str, visible: set[str]) -> None:
        """Of the claimed task ids, those in `visible` are the subscription's; the others are
        forgotten (a task the subscription may not see, or one that no longer exists)."""
        seen = self._seen.get(sub_id)
        if seen is None:
            return
        for task_id, version in seen.claimed.items():
            if task_id in visible:
                seen.versions[task_id] = max(version, seen.versions.get(task_id, 0))
        seen.claimed = {}

    def forget(self, sub_id: str, task_ids: set[str]) -> None:
        """Drop what the subscription knows of tasks it does not get (ids that do not exist)."""
        seen = self._seen.get(sub_id)
        if seen is not None:
            for task_id in task_ids:
                seen.claimed.pop(task_id, None)
                seen.versions.pop(task_id, None)

    def accept(self, sub_id: str, task_id: str, version: int, *, final: bool = False) -> Offer:
        """Whether a visible task state is to be sent to a subscription: `ACCEPTED` unless it
        already has that version or newer. Only the versions change; nothing is queued.

        `final` says the state is a final one: it never changes again, so once the version map
        grows large the task may be forgotten.
        """
        seen = self._seen.get(sub_id)
        if seen is None or self.closed:
            return Offer.IGNORED
        versions = seen.versions
        known = versions.get(task_id)
        if known is None and seen.claimed:
            # The task is visible to the subscription (it was offered): its claim is confirmed.
            known = seen.claimed.pop(task_id, None)
            if known is not None:
                versions[task_id] = known
        if known is not None and known >= version:
            return Offer.STALE
        versions[task_id] = version
        if final and len(versions) > _VERSIONS_SOFT_LIMIT:
            # Only a repeat of this same final state could come later: harmless.
            del versions[task_id]
        return Offer.ACCEPTED

    def accept_deleted(self, sub_id: str, task_id: str) -> Offer:
        """Whether a `deleted` is to be sent: only to a subscription that has seen the task."""
        seen = self._seen.get(sub_id)
        if seen is None or self.closed or task_id not in seen.versions:
            return Offer.IGNORED
        seen.versions[task_id] = _DELETED
        return Offer.ACCEPTED

    # Pending messages.

    def put_update(self, sub_id: str, task_id: str, message: bytes) -> Offer:
        """Queue an accepted task state or deletion, replacing a pending one of the same task."""
        if self.closed:
            return Offer.IGNORED
        return self._put((sub_id, task_id), message)

    def put_control(self, message: bytes) -> Offer:
        """Queue a message that is not a task update (pong, error, subscribed, unsubscribed)."""
        if self.closed:
            return Offer.IGNORED
        return self._put(next(self._keys), message)

    def pop(self) -> bytes | None:
        """The oldest pending message, or None."""
        if not self._pending:
            return None
        message = self._pending.popitem(last=False)[1]
        self.bytes -= len(message)
        return message

    def close(self) -> None:
        """Drop everything and accept nothing more."""
        self.closed = True
        self._pending.clear()
        self._seen.clear()
        self.bytes = 0

    def _put(self, key: object, message: bytes) -> Offer:
        assert message, "messages are never empty (`bytes` counts them)"
        replaced = self._pending.get(key)
        if replaced is not None:
            self.bytes -= len(replaced)
        self._pending[key] = message
        self.bytes += len(message)
        size = len(self._pending)
        self.peak = max(self.peak, size)
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        # One message alone never overflows on bytes: it can always be sent.
        if size >= self.limit or (self.bytes > self.limit_bytes and size > 1):
            self.close()
            return Offer.OVERFLOW
        return Offer.COALESCED if replaced is not None else Offer.QUEUED
