"""Turns the tasks change stream into delivery records, before anything is sent.

The recorder follows the stream of task changes (only changes of state, and of progress when an
endpoint takes progress events: the server drops the rest), matches each event against the
enabled endpoints of the task's owner, and inserts one delivery per endpoint that wants it. Only
then does it store its place in the stream (the resume token), so a sender that dies at any
point resumes at a change whose deliveries may be recorded again, never past one whose are not;
recording again is harmless, as a delivery's id is derived from its endpoint, task and event.

While no endpoint is enabled it follows nothing, so tasks cost nothing extra. When the stream
cannot resume (the sender was away longer than the server keeps the stream's history, or it
was idle), it opens a new stream first and then catches up from the tasks themselves: every
task that finished since shortly before its last place (or since the oldest endpoint was
registered) gets its ending delivered. Start and progress events in such a gap are not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from services.webhooks.directory import Directory
from shared.clock import utcnow
from shared.store import Store
from shared.store.task_changes import HistoryLost, TaskChangeFeed
from shared.webhooks import metrics
from shared.webhooks.events import Event, delivery_id, events_of, final_event, payload, wants
from shared.webhooks.records import Delivery

log = logging.getLogger(__name__)

#: Seconds before the last place in the stream that catching up starts (writers' clocks differ).
CATCH_UP_MARGIN_S = 60.0
#: Seconds between saves of the place in the stream: a sender that dies re-reads at most this
#: much (recording again is harmless), and a busy stream costs one write a second, not a batch.
SAVE_EVERY_S = 1.0
MAX_BACKOFF_S = 5.0


class Recorder:
    """Follows the tasks change stream and records deliveries."""

    def __init__(
        self,
        store: Store,
        directory: Directory,
        *,
        poll_s: float,
        on_recorded: Callable[[], None],
    ) -> None:
        self.store = store
        self.directory = directory
        self.poll_s = poll_s
        self.on_recorded = on_recorded
        #: Set while a stream is open (or nothing needs one): no change is missed from then on.
        self.following = asyncio.Event()
        #: Streams opened so far (for tests and logs): none while no endpoint is enabled.
        self.streams_opened = 0
        #: Whether the place is known to be forgotten (idle), so it need not be read again.
        self._idle = False

    async def run_forever(self) -> None:
        """Record until cancelled; errors are logged and retried with a backoff."""
        backoff_s = 0.1
        while True:
            try:
                await self._round()
                backoff_s = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.following.clear()
                log.warning("webhook recorder failed: %r; again in %.1f s", exc, backoff_s)
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    async def _round(self) -> None:
        """Follow the stream while some endpoint is enabled; return when that changes."""
        await self.directory.refresh_if_older(self.poll_s)
        cursor = self.store.webhooks.cursor
        if not self.directory.any():
            if not self._idle:
                # Forget the place: when an endpoint comes, catching up starts from it.
                await cursor.save(None, utcnow())
                self._idle = True
            self.following.set()
            await asyncio.sleep(self.poll_s)
            return
        self._idle = False
        place = await cursor.load()
        progress = self.directory.wants_progress()
        token = place.token if place is not None else None
        try:
            async with TaskChangeFeed(
                self.store.tasks, progress=progress, resume_after=token
            ) as feed:
                self.streams_opened += 1
                if token is None:
                    await self._catch_up(place.seen_at if place is not None else None)
                    await cursor.save(feed.opened_token, utcnow())
                self.following.set()
                await self._follow(feed, progress)
        except HistoryLost as exc:
            log.warning("tasks change stream cannot resume (%s); catching up from the tasks", exc)
            await cursor.save(None, place.seen_at if place is not None else utcnow())

    async def _follow(self, feed: TaskChangeFeed, progress: bool) -> None:
        cursor = self.store.webhooks.cursor
        saved_at = time.monotonic()
        #: The place after what was recorded, not saved yet.
        token: Mapping[str, Any] | None = None
        while True:
            batch = await feed.batch(self.poll_s)
            # Read after the changes: an endpoint registered before them is known by now.
            await self.directory.refresh()
            if batch.unreadable:
                metrics.UNREADABLE.inc(batch.unreadable)
            await self.record(event for c in batch.changes for event in events_of(c))
            # Only after its deliveries are recorded: never a place past an unrecorded change.
            if batch.token is not None:
                token = batch.token
            if token is not None and time.monotonic() - saved_at >= SAVE_EVERY_S:
                await cursor.save(token, utcnow())
                saved_at, token = time.monotonic(), None
            if not self.directory.any() or self.directory.wants_progress() != progress:
                if token is not None:
                    await cursor.save(token, utcnow())
                return

    async def record(self, events: Iterable[Event]) -> int:
        """Record a delivery of each event for each endpoint that wants it; how many were new."""
        now = utcnow()
        deliveries: list[Delivery] = []
        for event in events:
            body: str | None = None
            for endpoint in self.directory.of_owner(event.task.owner):
                if not wants(
                    owner=endpoint.owner,
                    events=frozenset(endpoint.events),
                    task_types=tuple(endpoint.task_types),
                    created_at=endpoint.created_at,
                    event=event,
                ):
                    continue
                body = body or payload(event)
                deliveries.append(
                    Delivery(
                        id=delivery_id(endpoint.id, event.task.id, event.key),
                        endpoint_id=endpoint.id,
                        owner=endpoint.owner,
                        task_id=event.task.id,
                        event=event.type,
                        payload=body,
                        next_attempt_at=now,
                        window_from=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
        new = await self.store.webhooks.deliveries.record(deliveries)
        for delivery in deliveries:
            metrics.RECORDED.labels(delivery.event.value).inc()
        if new:
            self.on_recorded()
        return new

    async def _catch_up(self, last_seen: datetime | None) -> int:
        """Record the endings of tasks that finished since shortly before `last_seen` (but not
        before the oldest endpoint); how many deliveries that made."""
        earliest = self.directory.earliest_created_at()
        if earliest is None:
            return 0
        since = max(last_seen or earliest, earliest) - timedelta(seconds=CATCH_UP_MARGIN_S)
        after: tuple[datetime, str] | None = None
        recorded = 0
        while True:
            tasks = await self.store.webhooks.finished_since(since, after=after)
            if not tasks:
                break
            last = tasks[-1]
            after = (last.finished_at or since, last.id)
            recorded += await self.record(e for t in tasks if (e := final_event(t)) is not None)
        if recorded:
            log.info("caught up: %d deliveries of tasks that ended meanwhile", recorded)
        return recorded
