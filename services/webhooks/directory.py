"""The enabled endpoints, as the sender last read them."""

from __future__ import annotations

import time
from datetime import datetime

from shared.store.webhooks import WebhookEndpoints
from shared.webhooks.events import EventType
from shared.webhooks.records import Endpoint


class Directory:
    """Enabled endpoints by id and by owner, read again by `refresh`."""

    def __init__(self, endpoints: WebhookEndpoints) -> None:
        self.endpoints = endpoints
        self._by_id: dict[str, Endpoint] = {}
        self._by_owner: dict[str, list[Endpoint]] = {}
        #: When it was last read (monotonic seconds); None before the first time.
        self.loaded_at: float | None = None

    async def refresh(self) -> None:
        """Read every enabled endpoint again."""
        enabled = await self.endpoints.enabled()
        self._by_id = {endpoint.id: endpoint for endpoint in enabled}
        self._by_owner = {}
        for endpoint in enabled:
            self._by_owner.setdefault(endpoint.owner, []).append(endpoint)
        self.loaded_at = time.monotonic()

    async def refresh_if_older(self, age_s: float) -> None:
        """`refresh`, if it was last read more than `age_s` ago."""
        if self.loaded_at is None or time.monotonic() - self.loaded_at > age_s:
            await self.refresh()

    def get(self, endpoint_id: str) -> Endpoint | None:
        """The endpoint, if it is enabled."""
        return self._by_id.get(endpoint_id)

    def of_owner(self, owner: str) -> list[Endpoint]:
        """The enabled endpoints of `owner`."""
        return self._by_owner.get(owner, [])

    def drop(self, endpoint_id: str) -> None:
        """Forget an endpoint that was just disabled (until the next `refresh`)."""
        endpoint = self._by_id.pop(endpoint_id, None)
        if endpoint is not None:
            self._by_owner[endpoint.owner] = [
                e for e in self._by_owner.get(endpoint.owner, []) if e.id != endpoint_id
            ]

    def any(self) -> bool:
        """Whether any endpoint is enabled: if none is, nothing needs following."""
        return bool(self._by_id)

    def wants_progress(self) -> bool:
        """Whether any enabled endpoint takes progress events."""
        return any(EventType.PROGRESS in e.events for e in self._by_id.values())

    def earliest_created_at(self) -> datetime | None:
        """When the oldest enabled endpoint was registered."""
        return min((e.created_at for e in self._by_id.values()), default=None)
