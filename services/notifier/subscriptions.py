"""Who gets an update: the live subscriptions, indexed by task id and by owner. No I/O.

A subscription names task ids, or is `scope: all`. Its `owner` is whose tasks it may see: a user
name, or None for an administrator, who sees everyone's (`Principal.owner_filter`). A change of a
task reaches the subscriptions that name its id and the `scope: all` subscriptions, and only those
whose owner is the task's owner or None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

C = TypeVar("C")
K = TypeVar("K")


class Subscription(Generic[C]):
    """One live subscription of a connection (`connection` is whatever the caller uses for it)."""

    __slots__ = ("connection", "owner", "sub_id", "task_ids")

    def __init__(
        self, connection: C, sub_id: str, owner: str | None, task_ids: frozenset[str] | None
    ) -> None:
        self.connection = connection
        self.sub_id = sub_id
        self.owner = owner
        #: The task ids it follows; None for `scope: all`.
        self.task_ids = task_ids

    @property
    def scope_all(self) -> bool:
        """Whether it follows every task its owner may see."""
        return self.task_ids is None

    def __repr__(self) -> str:
        scope = "all" if self.task_ids is None else f"{len(self.task_ids)} tasks"
        return f"Subscription({self.sub_id!r}, owner={self.owner!r}, {scope})"


class SubscriptionRegistry(Generic[C]):
    """The live subscriptions of one notifier process."""

    def __init__(self) -> None:
        self._by_task: dict[str, set[Subscription[C]]] = {}
        self._all_by_owner: dict[str | None, set[Subscription[C]]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sub: Subscription[C]) -> None:
        """Start routing matching updates to `sub`."""
        if sub.task_ids is None:
            self._all_by_owner.setdefault(sub.owner, set()).add(sub)
        else:
            for task_id in sub.task_ids:
                self._by_task.setdefault(task_id, set()).add(sub)
        self._count += 1

    def remove(self, sub: Subscription[C]) -> None:
        """Stop routing to `sub` (no error if it is not there)."""
        if sub.task_ids is None:
            found = _discard(self._all_by_owner, sub.owner, sub)
        else:
            found = False
            for task_id in sub.task_ids:
                found = _discard(self._by_task, task_id, sub) or found
        if found:
            self._count -= 1

    def narrow(self, sub: Subscription[C], gone: set[str]) -> None:
        """Stop routing the tasks in `gone` (ids that do not exist) to an id subscription."""
        if sub.task_ids is None or not gone:
            return
        for task_id in gone & sub.task_ids:
            _discard(self._by_task, task_id, sub)
        sub.task_ids = sub.task_ids - gone

    def matching(self, task_id: str, owner: str) -> Iterator[Subscription[C]]:
        """The subscriptions that get a change of task `task_id` owned by `owner`."""
        for sub in self._by_task.get(task_id, ()):
            if sub.owner is None or sub.owner == owner:
                yield sub
        yield from self._all_by_owner.get(owner, ())
        yield from self._all_by_owner.get(None, ())

    def following(self, task_id: str) -> Iterator[Subscription[C]]:
        """Every subscription that may hold task `task_id`, whoever owns it (for deletes,
        whose owner the change stream no longer knows: the caller sends only to holders)."""
        yield from self._by_task.get(task_id, ())
        for subs in self._all_by_owner.values():
            yield from subs

    def task_ids(self) -> set[str]:
        """Every task id some id subscription names."""
        return set(self._by_task)

    def scope_all_owners(self) -> set[str | None]:
        """The owners with at least one `scope: all` subscription (None: an administrator)."""
        return set(self._all_by_owner)


def _discard(index: dict[K, set[Subscription[C]]], key: K, sub: Subscription[C]) -> bool:
    subs = index.get(key)
    if subs is None or sub not in subs:
        return False
    subs.discard(sub)
    if not subs:
        del index[key]
    return True
