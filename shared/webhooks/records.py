"""Webhook endpoints and deliveries as the store keeps them (`shared/store/webhooks.py`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.webhooks.events import EventType


class EndpointSecret(BaseModel):
    """One signing secret of an endpoint; a rotated-out one signs until `expires_at`."""

    secret: str = Field(repr=False)
    created_at: datetime
    expires_at: datetime | None = None

    def valid_at(self, now: datetime) -> bool:
        """Whether deliveries are still signed with it."""
        return self.expires_at is None or self.expires_at > now


class Endpoint(BaseModel):
    """A registered receiver of one user's task events."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(alias="_id")
    owner: str
    url: str
    description: str = ""
    events: list[EventType]
    #: Task types it gets events of (`prefix.*` for a family); empty: every type.
    task_types: list[str] = Field(default_factory=list)
    enabled: bool = True
    #: Why it was disabled: by its owner, or by the sender after a run of failed deliveries.
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    #: Deliveries that failed for good one after another since the last success.
    consecutive_failures: int = 0
    last_success_at: datetime | None = None
    last_failure_at: datetime | None = None
    #: The newest first.
    secrets: list[EndpointSecret] = Field(default_factory=list, repr=False)
    created_at: datetime
    updated_at: datetime

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets a delivery at `now` is signed with: the current one and any rotated-out
        one still in its overlap."""
        return [s.secret for s in self.secrets if s.valid_at(now)]

    def previous_secret_expires_at(self, now: datetime) -> datetime | None:
        """Until when a rotated-out secret still signs, if one does."""
        expiring = [s.expires_at for s in self.secrets if s.expires_at and s.expires_at > now]
        return max(expiring) if expiring else None


class DeliveryState(StrEnum):
    """Where a delivery is."""

    #: To be attempted at `next_attempt_at`.
    PENDING = "pending"
    #: A receiver answered 2xx.
    SUCCEEDED = "succeeded"
    #: Every attempt in its retry window failed.
    FAILED = "failed"
    #: Its endpoint is disabled; it resumes when the endpoint is enabled again.
    PAUSED = "paused"


class DeliveryAttempt(BaseModel):
    """One try at sending a delivery."""

    at: datetime
    #: The receiver's HTTP status; None when there was no answer.
    status_code: int | None = None
    latency_ms: float
    #: Why it failed (no answer, a refused destination, a status that is not 2xx).
    error: str | None = None
    #: The address connected to.
    address: str | None = None


class Delivery(BaseModel):
    """One event for one endpoint, recorded before it is attempted."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    #: The `webhook-id`: the same on every attempt, and if the event is recorded again.
    id: str = Field(alias="_id")
    endpoint_id: str
    owner: str
    task_id: str
    event: EventType
    #: The body sent, exactly (signed as is).
    payload: str
    state: DeliveryState = DeliveryState.PENDING
    #: When the next attempt is due (or when the attempt in flight gives up); pending only.
    next_attempt_at: datetime | None = None
    #: Since when its retry window runs: its recording, or its last replay.
    window_from: datetime
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
