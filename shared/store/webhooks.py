"""Webhook endpoints, their deliveries, and the sender's place in the tasks change stream.

A delivery is recorded (inserted, with an id derived from its endpoint, task and event) before
it is attempted, and changed by compare-and-sets only: a sender claims a due delivery by moving
its `next_attempt_at` to the end of a lease and naming the lease, and only the holder of the
lease records the attempt's outcome. A sender that dies mid-attempt leaves a delivery that is
due again when the lease ends; nothing is attempted by two senders at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from shared.records import StoredTask
from shared.store.change import stored
from shared.store.documents import Doc
from shared.store.tasks import read
from shared.topology import TASKS, WEBHOOK_CURSORS, WEBHOOK_DELIVERIES, WEBHOOK_ENDPOINTS
from shared.webhooks.records import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Endpoint,
    EndpointSecret,
)

log = logging.getLogger(__name__)

_DUPLICATE_KEY = 11000
#: Attempts kept per delivery (the oldest go first); the defaults make about 40.
MAX_ATTEMPTS_KEPT = 100


class WebhookEndpoints:
    """The `webhook_endpoints` collection."""

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def create(self, endpoint: Endpoint) -> None:
        """Store a new endpoint."""
        await self.collection.insert_one(stored(endpoint))

    async def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, or None."""
        doc = await self.collection.find_one({"_id": endpoint_id})
        return None if doc is None else Endpoint.model_validate(doc)

    async def of_owner(self, owner: str | None) -> list[Endpoint]:
        """The endpoints of `owner` (None: everyone's), newest first."""
        query: Doc = {} if owner is None else {"owner": owner}
        cursor = self.collection.find(query).sort("_id", DESCENDING)
        return [Endpoint.model_validate(doc) async for doc in cursor]

    async def count_of(self, owner: str) -> int:
        """How many endpoints `owner` has."""
        return await self.collection.count_documents({"owner": owner})

    async def enabled(self) -> list[Endpoint]:
        """Every enabled endpoint (what the sender records and sends for)."""
        return [Endpoint.model_validate(d) async for d in self.collection.find({"enabled": True})]

    async def update(self, endpoint_id: str, fields: Mapping[str, Any], at: datetime) -> bool:
        """Change the URL, description, events or task types; False if it is gone."""
        changes = {**{key: stored(value) for key, value in fields.items()}, "updated_at": at}
        result = await self.collection.update_one({"_id": endpoint_id}, {"$set": changes})
        return result.matched_count > 0

    async def enable(self, endpoint_id: str, at: datetime) -> bool:
        """Enable it again, its run of failures forgotten; False if it is gone."""
        result = await self.collection.update_one(
            {"_id": endpoint_id},
            {
                "$set": {"enabled": True, "consecutive_failures": 0, "updated_at": at},
                "$unset": {"disabled_reason": "", "disabled_at": ""},
            },
        )
        return result.matched_count > 0

    async def disable(self, endpoint_id: str, reason: str, at: datetime) -> bool:
        """Disable an enabled endpoint, saying why; False if it was not enabled (or is gone)."""
        result = await self.collection.update_one(
            {"_id": endpoint_id, "enabled": True},
            {
                "$set": {
                    "enabled": False,
                    "disabled_reason": reason,
                    "disabled_at": at,
                    "updated_at": at,
                }
            },
        )
        return result.modified_count > 0

    async def rotate(
        self, endpoint_id: str, new: EndpointSecret, overlap_until: datetime
    ) -> Endpoint | None:
        """Make `new` the signing secret; the current one goes on signing until
        `overlap_until`, and secrets whose overlap is over are dropped. None if it is gone.

        A compare-and-set on the secrets as read: two rotations at once both take effect, one
        after the other, rather than one undoing the other."""
        for _ in range(10):
            endpoint = await self.get(endpoint_id)
            if endpoint is None:
                return None
            now = new.created_at
            kept = [
                s.model_copy(update={"expires_at": s.expires_at or overlap_until})
                for s in endpoint.secrets
                if s.valid_at(now)
            ]
            secrets = [stored(new), *(stored(s) for s in kept)]
            result = await self.collection.update_one(
                {"_id": endpoint_id, "secrets": [stored(s) for s in endpoint.secrets]},
                {"$set": {"secrets": secrets, "updated_at": now}},
            )
            if result.modified_count:
                return await self.get(endpoint_id)
        raise RuntimeError(f"the secrets of endpoint {endpoint_id} kept changing")

    async def delete(self, endpoint_id: str) -> bool:
        """Remove it; False if it was not there."""
        return (await self.collection.delete_one({"_id": endpoint_id})).deleted_count > 0

    async def delivered(self, endpoint_id: str, at: datetime) -> None:
        """A delivery to it succeeded: its run of failures is over."""
        await self.collection.update_one(
            {"_id": endpoint_id},
            {"$set": {"consecutive_failures": 0, "last_success_at": at}},
        )

    async def delivery_failed(self, endpoint_id: str, at: datetime) -> int:
        """A delivery to it failed for good; how many have, one after another, since the
        last success."""
        await self.collection.update_one(
            {"_id": endpoint_id},
            {"$inc": {"consecutive_failures": 1}, "$set": {"last_failure_at": at}},
        )
        doc = await self.collection.find_one({"_id": endpoint_id}, {"consecutive_failures": 1})
        return 0 if doc is None else int(doc.get("consecutive_failures", 0))


class InFlight(RuntimeError):
    """The delivery is being attempted right now; it cannot be replayed until that ends."""


def _delivery(doc: Doc) -> Delivery | None:
    """The delivery of a document, or None (logged) for one that does not fit the model."""
    try:
        return Delivery.model_validate(doc)
    except ValidationError as exc:
        log.error("webhook delivery document %r cannot be read: %s", doc.get("_id"), exc)
        return None


class WebhookDeliveries:
    """The `webhook_deliveries` collection."""

    def __init__(self, collection: AsyncCollection[Doc], *, retention_s: int) -> None:
        self.collection = collection
        self.retention_s = retention_s

    def _expires(self, at: datetime) -> datetime:
        return at + timedelta(seconds=self.retention_s)

    async def record(self, deliveries: list[Delivery]) -> int:
        """Insert deliveries, in one write; those recorded before are left as they are. How
        many were new."""
        if not deliveries:
            return 0
        docs = [{**stored(d), "expires_at": self._expires(d.created_at)} for d in deliveries]
        try:
            result = await self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != _DUPLICATE_KEY for error in errors):
                raise
            return int(exc.details.get("nInserted", 0))
        return len(result.inserted_ids)

    async def get(self, delivery_id: str) -> Delivery | None:
        """The delivery, or None."""
        doc = await self.collection.find_one({"_id": delivery_id})
        return None if doc is None else _delivery(doc)

    async def due(
        self,
        now: datetime,
        *,
        excluding: Iterable[str] = (),
        among: Iterable[str] | None = None,
        limit: int = 100,
    ) -> list[Delivery]:
        """Pending deliveries due by `now`, the most overdue first, but none of the endpoints
        `excluding` (those with no room for another attempt), and only of the endpoints `among`
        if given (those with room when the others have none)."""
        query: Doc = {"next_attempt_at": {"$lte": now}}
        skipped = sorted(excluding)
        if among is not None:
            query["endpoint_id"] = {"$in": sorted(set(among) - set(skipped))}
        elif skipped:
            query["endpoint_id"] = {"$nin": skipped}
        cursor = self.collection.find(query).sort("next_attempt_at", ASCENDING).limit(limit)
        due: list[Delivery] = []
        async for doc in cursor:
            delivery = _delivery(doc)
            if delivery is not None:
                due.append(delivery)
                continue
            # Left due, it would come back first every round and, a hundred of them, hold up
            # every delivery behind them; no attempt can be made of it anyway.
            await self.collection.update_one(
                {"_id": doc["_id"]}, {"$unset": {"next_attempt_at": ""}}
            )
        return due

    async def claim(self, delivery: Delivery, lease: str, lease_until: datetime) -> bool:
        """Take a due delivery for one attempt, until `lease_until`; False if another sender
        took it first (or it was replayed, paused or removed meanwhile)."""
        result = await self.collection.update_one(
            {
                "_id": delivery.id,
                "state": DeliveryState.PENDING.value,
                "next_attempt_at": delivery.next_attempt_at,
            },
            {"$set": {"next_attempt_at": lease_until, "lease": lease}},
        )
        return result.modified_count > 0

    async def conclude(
        self,
        delivery_id: str,
        lease: str,
        attempt: DeliveryAttempt,
        state: DeliveryState,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Record an attempt and what follows (`pending` again at `next_attempt_at`, or done),
        if the lease is still held; False if it is not (it ran out and another sender took
        the delivery, or it was replayed or removed)."""
        update: Doc = {
            "$set": {"state": state.value, "updated_at": attempt.at},
            "$unset": {"lease": ""},
            "$push": {"attempts": {"$each": [stored(attempt)], "$slice": -MAX_ATTEMPTS_KEPT}},
        }
        if next_attempt_at is None:
            update["$unset"]["next_attempt_at"] = ""
        else:
            update["$set"]["next_attempt_at"] = next_attempt_at
        result = await self.collection.update_one({"_id": delivery_id, "lease": lease}, update)
        return result.modified_count > 0

    async def replay(self, delivery_id: str, now: datetime) -> Delivery | None:
        """Attempt a delivery again now, with a new retry window and the same `webhook-id`;
        None if it is gone. Raises `InFlight` while an attempt of it runs."""
        result = await self.collection.update_one(
            {
                "_id": delivery_id,
                "$or": [{"lease": {"$exists": False}}, {"next_attempt_at": {"$lt": now}}],
            },
            {
                "$set": {
                    "state": DeliveryState.PENDING.value,
                    "next_attempt_at": now,
                    "window_from": now,
                    "updated_at": now,
                    "expires_at": self._expires(now),
                },
                "$unset": {"lease": ""},
            },
        )
        if result.matched_count == 0:
            if await self.collection.count_documents({"_id": delivery_id}, limit=1):
                raise InFlight(delivery_id)
            return None
        return await self.get(delivery_id)

    async def pause(self, endpoint_id: str, at: datetime) -> int:
        """Hold the pending deliveries of a disabled endpoint (not those in flight); how many."""
        result = await self.collection.update_many(
            {
                "endpoint_id": endpoint_id,
                "state": DeliveryState.PENDING.value,
                "lease": {"$exists": False},
            },
            {
                "$set": {"state": DeliveryState.PAUSED.value, "updated_at": at},
                "$unset": {"next_attempt_at": ""},
            },
        )
        return result.modified_count

    async def resume(self, endpoint_id: str, now: datetime) -> int:
        """Make the held deliveries of an endpoint enabled again due now, each with a new retry
        window; how many."""
        result = await self.collection.update_many(
            {"endpoint_id": endpoint_id, "state": DeliveryState.PAUSED.value},
            {
                "$set": {
                    "state": DeliveryState.PENDING.value,
                    "next_attempt_at": now,
                    "window_from": now,
                    "updated_at": now,
                    "expires_at": self._expires(now),
                }
            },
        )
        return result.modified_count

    async def remove_of(self, endpoint_id: str) -> int:
        """Remove every delivery of a removed endpoint."""
        return (await self.collection.delete_many({"endpoint_id": endpoint_id})).deleted_count

    async def page(
        self, endpoint_id: str, *, limit: int, before: tuple[datetime, str] | None = None
    ) -> list[Delivery]:
        """Up to `limit` deliveries of an endpoint, newest first, older than `before`
        ((created_at, id) of the last one of the previous page) if given.

        A document that does not fit the model is left out (and logged), and reading goes on
        past it, so that a page is short only at the end: the listing's `next` is built only
        after a full page, and one odd delivery must neither fail the listing nor end it.
        """
        found: list[Delivery] = []
        while True:
            query: Doc = {"endpoint_id": endpoint_id}
            if before is not None:
                at, last_id = before
                query["$or"] = [
                    {"created_at": {"$lt": at}},
                    {"created_at": at, "_id": {"$lt": last_id}},
                ]
            asked = limit - len(found)
            cursor = (
                self.collection.find(query)
                .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
                .limit(asked)
            )
            raw = 0
            last: Doc = {}
            async for doc in cursor:
                raw, last = raw + 1, doc
                if (delivery := _delivery(doc)) is not None:
                    found.append(delivery)
            if len(found) == limit or raw < asked:
                return found
            # Go on after the last document read. One whose time is not a date sorts after
            # every date, and a query after a date never reaches it: the page ends there.
            if not isinstance(last.get("created_at"), datetime):
                return found
            before = (last["created_at"], last["_id"])


@dataclass(frozen=True)
class CursorRecord:
    """Where the sender is in the tasks change stream."""

    #: The resume token after the last change whose deliveries are recorded; None: none yet.
    token: Mapping[str, Any] | None
    #: When that change was read (catching up from the tasks starts a little before it).
    seen_at: datetime


class WebhookCursor:
    """The `webhook_cursors` collection: one document, the sender's place in the stream."""

    KEY = "tasks"

    def __init__(self, collection: AsyncCollection[Doc]) -> None:
        self.collection = collection

    async def load(self) -> CursorRecord | None:
        """The stored place, or None if there is none."""
        doc = await self.collection.find_one({"_id": self.KEY})
        if doc is None:
            return None
        return CursorRecord(doc.get("token"), doc["seen_at"])

    async def save(self, token: Mapping[str, Any] | None, seen_at: datetime) -> None:
        """Store the place: every change up to `token` has its deliveries recorded."""
        await self.collection.update_one(
            {"_id": self.KEY},
            {"$set": {"token": dict(token) if token is not None else None, "seen_at": seen_at}},
            upsert=True,
        )


class WebhookStore:
    """Endpoints, deliveries and the stream cursor of one database."""

    def __init__(self, db: AsyncDatabase[Doc], *, retention_s: int) -> None:
        self.endpoints = WebhookEndpoints(db[WEBHOOK_ENDPOINTS])
        self.deliveries = WebhookDeliveries(db[WEBHOOK_DELIVERIES], retention_s=retention_s)
        self.cursor = WebhookCursor(db[WEBHOOK_CURSORS])
        self._tasks = db[TASKS]

    async def finished_since(
        self, since: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> list[StoredTask]:
        """Tasks that finished at or after `since`, in order of finishing, after `after`
        ((finished_at, id) of the last of the previous page): how the sender catches up when
        the change stream cannot resume."""
        query: Doc = {"finished_at": {"$gte": since}}
        if after is not None:
            at, last_id = after
            query = {
                "$or": [{"finished_at": {"$gt": at}}, {"finished_at": at, "_id": {"$gt": last_id}}]
            }
        cursor = (
            self._tasks.find(query)
            .sort([("finished_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [task async for doc in cursor if (task := read(doc)) is not None]
