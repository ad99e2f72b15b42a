"""Fan-out: committed task changes to the subscriptions that match, and initial states."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING

from services.notifier.client import Client
from services.notifier.protocol import (
    PROBLEM,
    Subscribe,
    error_message,
    subscribed_message,
    unsubscribed_message,
)
from services.notifier.subscriptions import Subscription, SubscriptionRegistry
from shared import metrics
from shared.ids import is_task_id
from shared.lifecycle import FINAL_STATES, GROUP_STATES, TaskGroup
from shared.records import StoredTask
from shared.store import Store

Doc = dict[str, Any]

log = logging.getLogger(__name__)

#: Margin added before `since_ts` (and a rebuild's start), for clocks of writers that differ.
CLOCK_MARGIN = timedelta(seconds=5)
#: Finished tasks in the default initial state of `scope: all`, newest first.
RECENT_FINISHED = 100

_FINAL = frozenset(state.value for state in FINAL_STATES)
_PENDING = sorted(state.value for state in GROUP_STATES[TaskGroup.PENDING])


def render(doc: Mapping[str, Any]) -> str:
    """A stored task as JSON, exactly as `GET /api/v1/tasks/{id}` shows it."""
    return StoredTask.model_validate(dict(doc)).view().model_dump_json()


class Hub:
    """The subscriptions of one notifier process and the fan-out of changes to them."""

    def __init__(self, store: Store, *, max_subscriptions: int = 100) -> None:
        self.store = store
        self.max_subscriptions = max_subscriptions
        self.registry: SubscriptionRegistry[Client] = SubscriptionRegistry()
        self.clients: set[Client] = set()

    # Fan-out: synchronous, never waits on a socket.

    def publish_change(self, change: Mapping[str, Any]) -> None:
        """Route one change-stream event."""
        operation = change.get("operationType")
        if operation in ("insert", "update", "replace"):
            doc = change.get("fullDocument")
            if doc is not None:  # None: deleted since; its delete event follows
                self.publish_doc(doc)
        elif operation == "delete":
            self.publish_deleted(change["documentKey"]["_id"])

    def publish_doc(self, doc: Mapping[str, Any]) -> None:
        """Offer a task's state to every subscription that matches it."""
        subs = list(self.registry.matching(doc["_id"], doc["owner"]))
        if not subs:
            return
        try:
            task_json = render(doc)
        except Exception:
            log.exception("task %s cannot be rendered; not pushed", doc.get("_id"))
            return
        final = doc["state"] in _FINAL
        for sub in subs:
            sub.client.push_task(sub.sub_id, doc["_id"], doc["version"], task_json, final=final)

    def publish_deleted(self, task_id: str) -> None:
        """Tell the subscriptions that hold a task that it was deleted."""
        for sub in list(self.registry.following(task_id)):
            sub.client.push_deleted(sub.sub_id, task_id)

    # Connections and their subscriptions.

    def add_client(self, client: Client) -> None:
        """A new connection."""
        self.clients.add(client)
        metrics.WS_CONNECTIONS.inc()

    def drop_client(self, client: Client) -> None:
        """A connection went away: forget its subscriptions."""
        for sub in client.subs.values():
            self.registry.remove(sub)
        client.subs.clear()
        if client in self.clients:
            self.clients.discard(client)
            metrics.WS_CONNECTIONS.dec()

    async def subscribe(self, client: Client, message: Subscribe) -> None:
        """Register a subscription, then send its initial state from the database.

        Registered first, so a change committed after the snapshot's read reaches it live; the
        outbox's versions drop whichever of the two copies of a task is older.
        """
        if message.id not in client.subs and len(client.subs) >= self.max_subscriptions:
            client.push_control(
                error_message(
                    f"{PROBLEM}too-many-subscriptions",
                    f"a connection may hold {self.max_subscriptions} subscriptions; "
                    "unsubscribe from one first",
                    message.id,
                )
            )
            return
        if message.id in client.subs:
            client.push_control(
                error_message(
                    f"{PROBLEM}duplicate-subscription",
                    f"a subscription with id {message.id!r} is live on this connection",
                    message.id,
                )
            )
            return
        task_ids = None if message.task_ids is None else frozenset(message.task_ids)
        sub = Subscription(client, message.id, client.owner, task_ids)
        client.outbox.open_subscription(message.id, message.since)
        client.subs[message.id] = sub
        self.registry.add(sub)
        if message.task_ids is None:
            docs = self._scope_all_snapshot(client.owner, message.since_ts)
        else:
            docs = self._ids_snapshot(client, sub, message.task_ids)
        async for doc in docs:
            await client.wait_for_room()
            if client.subs.get(message.id) is not sub:
                return  # unsubscribed meanwhile (cannot happen today: one reader per client)
            client.push_task(
                sub.sub_id, doc["_id"], doc["version"], render(doc), final=doc["state"] in _FINAL
            )
        client.push_control(subscribed_message(message.id))

    def unsubscribe(self, client: Client, sub_id: str) -> None:
        """End a subscription."""
        sub = client.subs.pop(sub_id, None)
        if sub is None:
            client.push_control(
                error_message(
                    f"{PROBLEM}unknown-subscription",
                    f"no live subscription has id {sub_id!r}",
                    sub_id,
                )
            )
            return
        self.registry.remove(sub)
        client.outbox.close_subscription(sub_id)
        client.push_control(unsubscribed_message(sub_id))

    async def _ids_snapshot(
        self, client: Client, sub: Subscription[Client], task_ids: Iterable[str]
    ) -> AsyncIterator[Doc]:
        wanted = list(task_ids)
        query: Doc = {"_id": {"$in": [t for t in wanted if is_task_id(t)]}}
        if client.owner is not None:
            query["owner"] = client.owner
        found: set[str] = set()
        async for doc in self.store.tasks.collection.find(query):
            found.add(doc["_id"])
            yield doc
        missing = [t for t in wanted if t not in found]
        if missing:
            self.registry.narrow(sub, set(missing))
            client.push_control(_not_found(sub.sub_id, missing))

    async def _scope_all_snapshot(
        self, owner: str | None, since_ts: datetime | None
    ) -> AsyncIterator[Doc]:
        tasks = self.store.tasks.collection
        visible = _visible(owner)
        if since_ts is not None:
            query = {**visible, "updated_at": {"$gte": since_ts - CLOCK_MARGIN}}
            async for doc in tasks.find(query).sort("updated_at", ASCENDING):
                yield doc
            return
        async for doc in tasks.find({**visible, "state": {"$in": _PENDING}}):
            yield doc
        recent = {**visible, "state": {"$in": sorted(_FINAL)}}
        async for doc in tasks.find(recent).sort("_id", DESCENDING).limit(RECENT_FINISHED):
            yield doc

    async def resend_since(self, since: datetime) -> int:
        """Offer the current state of every subscribed task that may have changed since `since`.

        The rebuild after the change stream lost its place: connections' versions drop what
        they already have. Returns the number of tasks read.
        """
        read = 0
        ids = [t for t in self.registry.task_ids() if is_task_id(t)]
        for start in range(0, len(ids), 1000):
            async for doc in self.store.tasks.collection.find(
                {"_id": {"$in": ids[start : start + 1000]}}
            ):
                self.publish_doc(doc)
                read += 1
        for owner in self.registry.scope_all_owners():
            query = {**_visible(owner), "updated_at": {"$gte": since - CLOCK_MARGIN}}
            async for doc in self.store.tasks.collection.find(query):
                self.publish_doc(doc)
                read += 1
        return read


def _visible(owner: str | None) -> Doc:
    """The query part that keeps to the tasks `owner` may see (None: every task)."""
    return {} if owner is None else {"owner": owner}


def _not_found(sub_id: str, missing: list[str]) -> str:
    shown = ", ".join(missing[:10]) + (
        f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    )
    # `tasks` lists every missing id, for clients that follow many.
    return error_message(f"{PROBLEM}not-found", f"no task {shown}", sub_id, tasks=missing)
