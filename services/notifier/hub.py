"""Fan-out: committed task changes to the subscriptions that match, and initial states.

A change is rendered once, and its `task` message built and framed once per subscription id
(clients use the same few ids, so usually once per change); every connection that gets it shares
those bytes. A connection that keeps up gets the frame written to its socket at once, with no
task of its own woken; one that is behind queues the message (see `connection`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from datetime import datetime, timedelta

from pydantic import TypeAdapter

from services.notifier.connection import Connection, Prepared
from services.notifier.outbound import (
    deleted_message,
    error_message,
    subscribed_message,
    task_message,
    unsubscribed_message,
)
from services.notifier.protocol import PROBLEM, SubscribeMessage
from services.notifier.sendqueue import Offer
from services.notifier.subscriptions import Subscription, SubscriptionRegistry
from shared import metrics
from shared.ids import is_task_id
from shared.lifecycle import FINAL_STATES, GROUP_STATES, TaskGroup
from shared.records import StoredTask
from shared.store import Store
from shared.store.task_stream import TaskChanged, TaskDeleted, TaskEvent, TaskUnreadable
from shared.task import Task

log = logging.getLogger(__name__)

#: Margin added before `since_ts` (and a rebuild's start), for clocks of writers that differ.
CLOCK_MARGIN = timedelta(seconds=5)
#: Finished tasks in the default initial state of `scope: all`, newest first.
RECENT_FINISHED = 100
#: Task ids per `$in` query.
IDS_PER_QUERY = 1000

_TASK = TypeAdapter(Task)


def render(task: StoredTask) -> bytes:
    """A stored task as JSON, exactly as `GET /api/v1/tasks/{id}` shows it."""
    return _TASK.dump_json(task.view())


class Rendered:
    """One stored task state, rendered for the wire (once, however many get it)."""

    __slots__ = ("final", "id", "json", "owner", "version")

    def __init__(self, task: StoredTask) -> None:
        self.id = task.id
        self.owner = task.owner
        self.version = task.version
        self.final = task.final
        self.json = render(task)


def rendered(task: StoredTask) -> Rendered | None:
    """The task rendered, or None (and a log line) if it cannot be: one odd task is skipped,
    it never breaks a push or a socket."""
    try:
        return Rendered(task)
    except Exception:
        log.exception("task %r cannot be rendered; not pushed", task.id)
        unrenderable()
        return None


def unrenderable() -> None:
    """Count a task that could not be pushed (its document does not fit, or it does not
    render)."""
    metrics.WS_PUSHES.add("unrenderable")


class Hub:
    """The subscriptions of one notifier process and the fan-out of changes to them."""

    def __init__(self, store: Store, *, max_subscriptions: int = 100) -> None:
        self.store = store
        self.max_subscriptions = max_subscriptions
        self.registry: SubscriptionRegistry[Connection] = SubscriptionRegistry()
        self.connections: set[Connection] = set()

    # Fan-out: synchronous, never waits on a socket.

    def publish_change(self, event: TaskEvent) -> None:
        """Route one committed change."""
        match event:
            case TaskChanged(task):
                self.publish_task(task)
            case TaskDeleted(task_id):
                self.publish_deleted(task_id)
            case TaskUnreadable():
                unrenderable()

    def publish_task(self, stored: StoredTask) -> None:
        """Offer a task's state to every subscription that matches it."""
        subs = list(self.registry.matching(stored.id, stored.owner))
        if subs and (task := rendered(stored)) is not None:
            self.publish(task, subs)

    def publish(self, task: Rendered, subs: Iterable[Subscription[Connection]]) -> None:
        """Offer a rendered task to `subs`: one message per subscription id, written at once
        to the connections that keep up (framed once for all of them), queued for the others."""
        # The hot loop of the notifier (once per subscriber and change): names bound once.
        task_id, version, final = task.id, task.version, task.final
        accepted = Offer.ACCEPTED
        messages: dict[str, Prepared] = {}
        written = 0
        dropped: dict[str, int] = {}
        for sub in subs:
            connection, sub_id = sub.connection, sub.sub_id
            offer = connection.queue.accept(sub_id, task_id, version, final=final)
            if offer is not accepted:
                dropped[offer.value] = dropped.get(offer.value, 0) + 1
                continue
            message = messages.get(sub_id)
            if message is None:
                message = messages[sub_id] = Prepared(task_message(sub_id, task.json))
            if connection.writable_now():
                message.write(connection)
                written += 1
            else:
                connection.queue_update(sub_id, task_id, message.text)  # counted there
        metrics.WS_PUSHES.add(Offer.QUEUED.value, written)
        for result, count in dropped.items():
            metrics.WS_PUSHES.add(result, count)

    def publish_deleted(self, task_id: str) -> None:
        """Tell the subscriptions that have seen a task that it was deleted."""
        for sub in list(self.registry.following(task_id)):
            if sub.connection.queue.accept_deleted(sub.sub_id, task_id) is Offer.ACCEPTED:
                sub.connection.send_update(
                    sub.sub_id, task_id, deleted_message(sub.sub_id, task_id)
                )

    # Connections and their subscriptions.

    def add_connection(self, connection: Connection) -> None:
        """A new connection."""
        self.connections.add(connection)
        metrics.WS_CONNECTIONS.inc()

    def drop_connection(self, connection: Connection) -> None:
        """A connection went away: forget its subscriptions."""
        for sub in connection.subs.values():
            self.registry.remove(sub)
        connection.subs.clear()
        if connection in self.connections:
            self.connections.discard(connection)
            metrics.WS_CONNECTIONS.dec()

    async def subscribe(self, connection: Connection, message: SubscribeMessage) -> None:
        """Register a subscription, then send its initial state from the database.

        Registered first, so a change committed after the snapshot's read reaches it live; the
        queue's versions drop whichever of the two copies of a task is older.
        """
        if message.id not in connection.subs and len(connection.subs) >= self.max_subscriptions:
            connection.send(
                error_message(
                    f"{PROBLEM}too-many-subscriptions",
                    f"a connection may hold {self.max_subscriptions} subscriptions; "
                    "unsubscribe from one first",
                    message.id,
                )
            )
            return
        if message.id in connection.subs:
            connection.send(
                error_message(
                    f"{PROBLEM}duplicate-subscription",
                    f"a subscription with id {message.id!r} is live on this connection",
                    message.id,
                )
            )
            return
        task_ids = message.task_ids
        sub = Subscription(
            connection,
            message.id,
            connection.owner,
            None if task_ids is None else frozenset(task_ids),
        )
        connection.queue.open_subscription(message.id, message.versions)
        connection.subs[message.id] = sub
        self.registry.add(sub)
        if task_ids is None:
            snapshot = self._scope_all_snapshot(connection.owner, message.since_ts)
        else:
            snapshot = self._ids_snapshot(connection, sub, task_ids)
        async for stored in snapshot:
            await connection.wait_for_room()
            if connection.subs.get(message.id) is not sub:
                return  # unsubscribed meanwhile (cannot happen today: one reader per client)
            task = rendered(stored)
            if task is not None and (
                connection.queue.accept(sub.sub_id, task.id, task.version, final=task.final)
                is Offer.ACCEPTED
            ):
                connection.send_update(sub.sub_id, task.id, task_message(sub.sub_id, task.json))
        if task_ids is None:
            await self._settle_claims(connection, sub)
        connection.send(subscribed_message(message.id))

    def unsubscribe(self, connection: Connection, sub_id: str) -> None:
        """End a subscription."""
        sub = connection.subs.pop(sub_id, None)
        if sub is None:
            connection.send(
                error_message(
                    f"{PROBLEM}unknown-subscription",
                    f"no live subscription has id {sub_id!r}",
                    sub_id,
                )
            )
            return
        self.registry.remove(sub)
        connection.queue.close_subscription(sub_id)
        connection.send(unsubscribed_message(sub_id))

    async def _ids_snapshot(
        self, connection: Connection, sub: Subscription[Connection], task_ids: Iterable[str]
    ) -> AsyncIterator[StoredTask]:
        wanted = list(task_ids)
        found: set[str] = set()
        async for task in self.store.tasks.of_ids(
            [t for t in wanted if is_task_id(t)], connection.owner
        ):
            found.add(task.id)
            yield task
        missing = [t for t in wanted if t not in found]
        if missing:
            # Another user's task and one that does not exist get the very same answer.
            self.registry.narrow(sub, set(missing))
            connection.queue.forget(sub.sub_id, set(missing))
            connection.send(_not_found(sub.sub_id, missing))

    async def _scope_all_snapshot(
        self, owner: str | None, since_ts: datetime | None
    ) -> AsyncIterator[StoredTask]:
        tasks = self.store.tasks
        if since_ts is not None:
            async for task in tasks.changed_since(
                owner, since_ts - CLOCK_MARGIN, oldest_first=True
            ):
                yield task
            return
        async for task in tasks.latest(owner, GROUP_STATES[TaskGroup.PENDING]):
            yield task
        async for task in tasks.latest(owner, FINAL_STATES, limit=RECENT_FINISHED):
            yield task

    async def _settle_claims(self, connection: Connection, sub: Subscription[Connection]) -> None:
        """Keep, of the tasks a `scope: all` client claimed in `since` and the snapshot did not
        show, those it may see: the others must never get a `deleted` (they are not its)."""
        claimed = sorted(connection.queue.claimed(sub.sub_id))
        owner = connection.owner
        if owner is None:  # an administrator may see every task
            connection.queue.settle_claims(sub.sub_id, set(claimed))
            return
        visible: set[str] = set()
        for start in range(0, len(claimed), IDS_PER_QUERY):
            visible |= await self.store.tasks.visible_ids(
                claimed[start : start + IDS_PER_QUERY], owner
            )
        connection.queue.settle_claims(sub.sub_id, visible)

    async def resend_since(self, since: datetime) -> int:
        """Offer the current state of every subscribed task that may have changed since `since`.

        The rebuild after the change stream lost its place: connections' versions drop what
        they already have. Returns the number of tasks read.
        """
        read = 0
        ids = [t for t in self.registry.task_ids() if is_task_id(t)]
        async for task in self.store.tasks.of_ids(ids, None):
            self.publish_task(task)
            read += 1
        for owner in self.registry.scope_all_owners():
            async for task in self.store.tasks.changed_since(owner, since - CLOCK_MARGIN):
                self.publish_task(task)
                read += 1
        return read


def _not_found(sub_id: str, missing: list[str]) -> bytes:
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    # `tasks` lists every missing id, for clients that follow many.
    return error_message(f"{PROBLEM}not-found", f"no task {shown}", sub_id, tasks=missing)
