"""Sends due deliveries: each claimed with a lease, attempted once, its outcome recorded.

A slow endpoint never slows the others, nor tasks: attempts run side by side in two lanes
(`lanes.py`): the main lane, `webhook_concurrency` attempts at most and
`webhook_endpoint_concurrency` of one endpoint, and the slow lane, `webhook_slow_concurrency`
attempts shared by the endpoints whose attempts took `webhook_slow_after_s` or more. An endpoint
with no room in its lane is left out of the next look for due deliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from datetime import timedelta

from services.webhooks import sending
from services.webhooks.directory import Directory
from services.webhooks.lanes import Lanes
from shared.clock import utcnow
from shared.settings import Settings
from shared.store import Store
from shared.webhooks import metrics, signing
from shared.webhooks.destinations import DestinationRefused, Policy, resolve
from shared.webhooks.records import Delivery, DeliveryAttempt, DeliveryState, Endpoint
from shared.webhooks.schedule import RetrySchedule

log = logging.getLogger(__name__)

#: Seconds a lease outlasts an attempt's timeout: a sender that died mid-attempt leaves the
#: delivery due again this long after the attempt would have given up.
LEASE_GRACE_S = 5.0


def schedule_of(settings: Settings) -> RetrySchedule:
    """The configured retry schedule."""
    return RetrySchedule(
        base_s=settings.webhook_retry_base_s,
        max_interval_s=settings.webhook_retry_max_interval_s,
        window_s=settings.webhook_retry_window_s,
    )


def policy_of(settings: Settings) -> Policy:
    """The configured destination policy."""
    return Policy.of(
        allow_loopback=settings.webhook_allow_loopback,
        allowed_networks=settings.webhook_allowed_networks,
    )


class Dispatcher:
    """Attempts due deliveries of one store."""

    def __init__(self, store: Store, directory: Directory, settings: Settings, name: str) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.name = name
        self.schedule = schedule_of(settings)
        self.policy = policy_of(settings)
        self.wake = asyncio.Event()
        self.lanes = Lanes(
            main_slots=settings.webhook_concurrency,
            endpoint_slots=settings.webhook_endpoint_concurrency,
            slow_slots=settings.webhook_slow_concurrency,
            # An attempt that timed out took the timeout: it makes its endpoint slow, whatever
            # the setting.
            slow_after_s=min(settings.webhook_slow_after_s, settings.webhook_timeout_s),
        )
        self._attempts: set[asyncio.Task[None]] = set()
        #: Endpoints this process saw a delivery fail for since their last success.
        self._failing: set[str] = set()
        #: Whether the last look left due deliveries for want of room: an attempt that ends
        #: then makes room, and looks again.
        self._crowded = False

    async def run_forever(self) -> None:
        """Send until cancelled: whenever deliveries are recorded or attempts end, and every
        `webhook_poll_s` for retries that fall due."""
        while True:
            try:
                await self.directory.refresh_if_older(self.settings.webhook_poll_s)
                await self.dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("webhook dispatch failed: %r", exc)
            wait_s = self.settings.webhook_poll_s
            moving_in = self.lanes.next_move_in()
            if self._crowded and moving_in is not None:
                # A main-lane slot frees when its attempt moves to the slow lane: look then.
                wait_s = min(wait_s, moving_in + 0.01)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), wait_s)
            self.wake.clear()

    async def dispatch_due(self) -> int:
        """Start an attempt of each due delivery there is room for; how many were started."""
        started = 0
        self._crowded = False
        if not self.directory.any():
            # Nothing can be sent (deliveries of disabled endpoints wait, held).
            return 0
        deliveries = self.store.webhooks.deliveries
        while True:
            main_free, slow_free = self.lanes.free()
            blocked = self.lanes.blocked()
            if blocked or not main_free:
                self._crowded = True
            slow_ready = self.lanes.slow_endpoints() - blocked
            among: set[str] | None = None
            if not main_free:
                # Only slow endpoints can start an attempt: look for theirs alone, or the
                # healthy ones' would fill the look and hide them.
                if not slow_ready:
                    return started
                among = slow_ready
            limit = main_free + (slow_free if slow_ready else 0)
            due = await deliveries.due(utcnow(), excluding=blocked, among=among, limit=limit)
            round_started = 0
            for delivery in due:
                token = self.lanes.reserve(delivery.endpoint_id)
                if token is None:
                    self._crowded = True
                    continue
                endpoint = await self._endpoint_of(delivery)
                if endpoint is None:
                    self.lanes.cancel(token)
                    continue
                lease = f"{self.name}:{uuid.uuid4().hex}"
                until = utcnow() + timedelta(
                    seconds=self.settings.webhook_timeout_s + LEASE_GRACE_S
                )
                if not await deliveries.claim(delivery, lease, until):
                    self.lanes.cancel(token)
                    continue
                task = asyncio.create_task(self._attempt(delivery, endpoint, lease, token))
                self._attempts.add(task)
                task.add_done_callback(self._attempts.discard)
                round_started += 1
            started += round_started
            if round_started == 0:
                return started

    async def _endpoint_of(self, delivery: Delivery) -> Endpoint | None:
        """The delivery's endpoint if it is enabled; a delivery of a disabled one is held, of a
        removed one removed."""
        endpoint = self.directory.get(delivery.endpoint_id)
        if endpoint is not None:
            return endpoint
        current = await self.store.webhooks.endpoints.get(delivery.endpoint_id)
        if current is None:
            await self.store.webhooks.deliveries.remove_of(delivery.endpoint_id)
            self.lanes.forget(delivery.endpoint_id)
            return None
        if not current.enabled:
            await self.store.webhooks.deliveries.pause(delivery.endpoint_id, utcnow())
            return None
        return current

    async def _attempt(
        self, delivery: Delivery, endpoint: Endpoint, lease: str, token: int
    ) -> None:
        try:
            await self.attempt(delivery, endpoint, lease)
        except Exception:
            # Its lease runs out and it is due again: nothing is lost.
            log.exception("attempt of delivery %s failed unexpectedly", delivery.id)
        finally:
            self.lanes.end(token)
            if self._crowded:
                self.wake.set()

    async def attempt(self, delivery: Delivery, endpoint: Endpoint, lease: str) -> DeliveryState:
        """Send a claimed delivery once and record how it went; its state after."""
        at = utcnow()
        started = time.monotonic()
        status: int | None = None
        address: str | None = None
        error: str | None = None
        try:
            destination = await resolve(endpoint.url, self.policy)
            address = destination.address
            headers = signing.headers(
                delivery.id, int(time.time()), delivery.payload, endpoint.signing_secrets(at)
            )
            answer = await sending.post(
                destination,
                endpoint.url,
                headers,
                delivery.payload,
                timeout_s=self.settings.webhook_timeout_s,
            )
            status = answer.status
            if not 200 <= status < 300:
                error = f"HTTP {status}"
                if 300 <= status < 400:
                    error += " (a redirect: redirects are not followed)"
                elif answer.excerpt.strip():
                    error += f": {answer.excerpt.strip()[:200]}"
        except DestinationRefused as exc:
            error = f"destination refused: {exc}"
        except sending.AttemptFailed as exc:
            error = str(exc)
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        metrics.ATTEMPT_SECONDS.observe(latency_ms / 1000)
        attempt = DeliveryAttempt(
            at=at, status_code=status, latency_ms=latency_ms, error=error, address=address
        )
        return await self._conclude(delivery, endpoint, lease, attempt)

    async def _conclude(
        self, delivery: Delivery, endpoint: Endpoint, lease: str, attempt: DeliveryAttempt
    ) -> DeliveryState:
        deliveries = self.store.webhooks.deliveries
        now = utcnow()
        next_at = None
        if attempt.error is None:
            state = DeliveryState.SUCCEEDED
        else:
            since = delivery.window_from
            failures = 1 + sum(1 for a in delivery.attempts if a.error and a.at >= since)
            next_at = self.schedule.next_attempt(failures, window_from=since, now=now)
            state = DeliveryState.PENDING if next_at is not None else DeliveryState.FAILED
        outcome = "retry" if state is DeliveryState.PENDING else state.value
        metrics.ATTEMPTS.labels(outcome).inc()
        if not await deliveries.conclude(delivery.id, lease, attempt, state, next_at):
            log.warning("delivery %s: the lease ran out before its attempt ended", delivery.id)
            return state
        if state is DeliveryState.SUCCEEDED:
            if endpoint.consecutive_failures or endpoint.id in self._failing:
                self._failing.discard(endpoint.id)
                await self.store.webhooks.endpoints.delivered(endpoint.id, now)
        elif state is DeliveryState.FAILED:
            await self._failed_for_good(endpoint, attempt)
        return state

    async def _failed_for_good(self, endpoint: Endpoint, attempt: DeliveryAttempt) -> None:
        """Count a delivery that failed for good; disable the endpoint after a run of them."""
        self._failing.add(endpoint.id)
        endpoints = self.store.webhooks.endpoints
        failures = await endpoints.delivery_failed(endpoint.id, utcnow())
        if failures < self.settings.webhook_disable_after_failures:
            return
        reason = (
            f"disabled after {failures} deliveries in a row failed for good "
            f"(each retried for {self.settings.webhook_retry_window_s:g} s); "
            f"the last attempt: {attempt.error}"
        )
        if await endpoints.disable(endpoint.id, reason, utcnow()):
            metrics.DISABLED.inc()
            log.warning("webhook endpoint %s %s", endpoint.id, reason)
            self.directory.drop(endpoint.id)
            await self.store.webhooks.deliveries.pause(endpoint.id, utcnow())

    async def stop(self, grace_s: float) -> None:
        """Let attempts in flight end within `grace_s`, then cancel the rest (their leases run
        out, and they are attempted again)."""
        if self._attempts:
            _, pending = await asyncio.wait(set(self._attempts), timeout=grace_s)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
