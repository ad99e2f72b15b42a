"""The sender's Prometheus metrics (its own registry, served at its /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry()

RECORDED = Counter(
    "tasklight_webhook_deliveries_recorded_total",
    "Deliveries written, by event type (an event read again after a restart counts again)",
    ["event"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "tasklight_webhook_attempts_total",
    "Delivery attempts, by outcome (succeeded, retry, failed)",
    ["outcome"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "tasklight_webhook_attempt_seconds",
    "Seconds from connecting to a receiver to its answer",
    registry=REGISTRY,
)
DISABLED = Counter(
    "tasklight_webhook_endpoints_disabled_total",
    "Endpoints disabled after a run of failed deliveries",
    registry=REGISTRY,
)
UNREADABLE = Counter(
    "tasklight_webhook_events_unreadable_total",
    "Task changes whose task was gone (deleted) before it could be read: not delivered",
    registry=REGISTRY,
)
