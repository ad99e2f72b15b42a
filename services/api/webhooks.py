"""Routes under /api/v1/webhooks: a user's webhook endpoints, their secrets and deliveries.

An endpoint receives its owner's task events, signed as Standard Webhooks; its secret is shown
once, when it is created or rotated. Another user's endpoint answers 404, like one that does not
exist (an admin sees everyone's). The sender (`services/webhooks/`) does the sending.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.api.problems import ProblemError, problem_responses
from services.api.runtime import RuntimeDep, UserDep
from shared.auth import Principal
from shared.clock import utcnow
from shared.ids import is_task_id, new_task_id
from shared.store.webhooks import InFlight
from shared.task import API_PREFIX
from shared.webhooks.destinations import DestinationRefused, Policy, resolve
from shared.webhooks.events import DEFAULT_EVENTS, EventType
from shared.webhooks.records import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    Endpoint,
    EndpointSecret,
)
from shared.webhooks.signing import new_secret

router = APIRouter(
    prefix=f"{API_PREFIX}/webhooks", tags=["webhooks"], responses=problem_responses(401)
)

REFUSED = "urn:tasklight:problem:webhook-destination-refused"
TaskTypes = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=200)]],
    Field(max_length=50, description="Task types (`prefix.*` for a family); empty: all"),
]
Events = Annotated[list[EventType], Field(min_length=1, max_length=len(EventType))]


def _unique(value: list[Any] | None) -> list[Any] | None:
    return None if value is None else list(dict.fromkeys(value))


class EndpointIn(BaseModel):
    """A new endpoint: where to post, which events (default: how tasks end), of which types."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000, examples=["https://example.com/hooks/tl"])
    events: Events = Field(default_factory=lambda: sorted(DEFAULT_EVENTS))
    task_types: TaskTypes = Field(default_factory=list)
    description: str = Field(default="", max_length=500)

    _dedupe = field_validator("events", "task_types")(_unique)


class EndpointPatch(BaseModel):
    """Changes to an endpoint; `enabled` turns it off (its deliveries wait) or on again."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=2000)
    events: Events | None = None
    task_types: TaskTypes | None = None
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None

    _dedupe = field_validator("events", "task_types")(_unique)


class EndpointOut(BaseModel):
    """An endpoint as its owner sees it (never its secrets)."""

    id: str
    owner: str
    url: str
    description: str
    events: list[EventType]
    task_types: list[str]
    enabled: bool
    #: Why it is disabled: by its owner, or after a run of failed deliveries.
    disabled_reason: str | None
    disabled_at: datetime | None
    #: Deliveries that failed for good in a row since the last success.
    consecutive_failures: int
    last_success_at: datetime | None
    last_failure_at: datetime | None
    #: Until when the secret before the last rotation still signs deliveries.
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    deliveries: str

    @classmethod
    def of(cls, endpoint: Endpoint) -> EndpointOut:
        """The view of a stored endpoint."""
        return cls(
            **endpoint.model_dump(exclude={"secrets"}),
            previous_secret_expires_at=endpoint.previous_secret_expires_at(utcnow()),
            deliveries=f"{API_PREFIX}/webhooks/{endpoint.id}/deliveries",
        )


class EndpointCreated(EndpointOut):
    """A new endpoint with its signing secret: shown this once, never again."""

    secret: str


class EndpointList(BaseModel):
    """The user's endpoints (an admin's: everyone's), newest first."""

    results: list[EndpointOut]


class RotatedSecret(BaseModel):
    """The endpoint's new secret, shown this once; the old one signs too until
    `previous_secret_expires_at`."""

    secret: str
    previous_secret_expires_at: datetime | None
    endpoint: EndpointOut


class DeliveryOut(BaseModel):
    """One event for the endpoint, with each attempt at sending it."""

    #: The `webhook-id` header: the same on every attempt and replay.
    id: str
    event: EventType
    task_id: str
    state: DeliveryState
    next_attempt_at: datetime | None
    created_at: datetime
    updated_at: datetime
    #: The body sent (the same on every attempt).
    payload: str
    attempts: list[DeliveryAttempt]

    @classmethod
    def of(cls, delivery: Delivery) -> DeliveryOut:
        """The view of a stored delivery."""
        return cls.model_validate(delivery.model_dump())


class DeliveryPage(BaseModel):
    """One page of an endpoint's deliveries, newest first; `next` is the next page's address."""

    results: list[DeliveryOut]
    next: str | None


def _policy(runtime: RuntimeDep) -> Policy:
    settings = runtime.settings
    return Policy.of(
        allow_loopback=settings.webhook_allow_loopback,
        allowed_networks=settings.webhook_allowed_networks,
    )


async def _checked_url(runtime: RuntimeDep, url: str) -> str:
    """The URL if a delivery may go there now; 422 naming why not (the sender checks again at
    every attempt: a name's addresses may change)."""
    try:
        await resolve(url, _policy(runtime))
    except DestinationRefused as exc:
        raise ProblemError(
            REFUSED,
            f"url: {exc}",
            errors=[{"loc": ["body", "url"], "msg": str(exc), "type": "destination_refused"}],
        ) from None
    return url


async def _owned(runtime: RuntimeDep, user: Principal, endpoint_id: str) -> Endpoint:
    endpoint = (
        await runtime.store.webhooks.endpoints.get(endpoint_id) if is_task_id(endpoint_id) else None
    )
    if endpoint is None or not user.may_see(endpoint.owner):
        raise ProblemError("urn:tasklight:problem:not-found", f"no webhook {endpoint_id}")
    return endpoint


@router.post(
    "",
    status_code=201,
    response_model=EndpointCreated,
    responses=problem_responses(400, 403, 409, 422),
    summary="Register a webhook endpoint",
)
async def create_endpoint(
    body: EndpointIn, runtime: RuntimeDep, user: UserDep, response: Response
) -> EndpointCreated:
    """Register an endpoint for the user's task events; the answer holds its signing secret,
    which is never shown again (rotate it to get a new one)."""
    url = await _checked_url(runtime, body.url)
    store = runtime.store.webhooks.endpoints
    limit = runtime.settings.webhook_max_endpoints
    if await store.count_of(user.name) >= limit:
        raise ProblemError(
            "urn:tasklight:problem:too-many-webhooks",
            f"{user.name} has {limit} webhook endpoints, the most allowed; remove one first",
        )
    now = utcnow()
    secret = new_secret()
    endpoint = Endpoint(
        id=new_task_id(),
        owner=user.name,
        url=url,
        description=body.description,
        events=body.events,
        task_types=body.task_types,
        secrets=[EndpointSecret(secret=secret, created_at=now)],
        created_at=now,
        updated_at=now,
    )
    await store.create(endpoint)
    response.headers["Location"] = f"{API_PREFIX}/webhooks/{endpoint.id}"
    return EndpointCreated(**EndpointOut.of(endpoint).model_dump(), secret=secret)


@router.get("", response_model=EndpointList, summary="List webhook endpoints")
async def list_endpoints(runtime: RuntimeDep, user: UserDep) -> EndpointList:
    """The user's endpoints (an admin's: everyone's), newest first."""
    endpoints = await runtime.store.webhooks.endpoints.of_owner(user.owner_filter)
    return EndpointList(results=[EndpointOut.of(e) for e in endpoints])


@router.get(
    "/{endpoint_id}",
    response_model=EndpointOut,
    responses=problem_responses(404),
    summary="Read a webhook endpoint",
)
async def get_endpoint(endpoint_id: str, runtime: RuntimeDep, user: UserDep) -> EndpointOut:
    """The endpoint, with why it is disabled if it is."""
    return EndpointOut.of(await _owned(runtime, user, endpoint_id))


@router.patch(
    "/{endpoint_id}",
    response_model=EndpointOut,
    responses=problem_responses(400, 403, 404, 422),
    summary="Change, disable or enable a webhook endpoint",
)
async def change_endpoint(
    endpoint_id: str, body: EndpointPatch, runtime: RuntimeDep, user: UserDep
) -> EndpointOut:
    """Change its URL, events, task types or description; `enabled: false` stops deliveries
    (they wait), `enabled: true` sends what waited and forgets the run of failures."""
    endpoint = await _owned(runtime, user, endpoint_id)
    store = runtime.store.webhooks
    now = utcnow()
    fields = body.model_dump(exclude_unset=True, exclude={"enabled"})
    if any(value is None for value in fields.values()):
        raise ProblemError(
            "urn:tasklight:problem:invalid-request",
            "a field given must have a value (leave it out to keep it)",
        )
    if "url" in fields:
        fields["url"] = await _checked_url(runtime, fields["url"])
    if fields:
        await store.endpoints.update(endpoint.id, fields, now)
    if body.enabled is True and not endpoint.enabled:
        await store.endpoints.enable(endpoint.id, now)
        await store.deliveries.resume(endpoint.id, now)
    elif body.enabled is False and endpoint.enabled:
        await store.endpoints.disable(endpoint.id, f"disabled by {user.name}", now)
        await store.deliveries.pause(endpoint.id, now)
    return EndpointOut.of(await _owned(runtime, user, endpoint_id))


@router.delete(
    "/{endpoint_id}",
    status_code=204,
    responses=problem_responses(403, 404),
    summary="Remove a webhook endpoint",
)
async def delete_endpoint(endpoint_id: str, runtime: RuntimeDep, user: UserDep) -> Response:
    """Remove the endpoint and its deliveries; nothing more is sent to it."""
    endpoint = await _owned(runtime, user, endpoint_id)
    await runtime.store.webhooks.endpoints.delete(endpoint.id)
    await runtime.store.webhooks.deliveries.remove_of(endpoint.id)
    return Response(status_code=204)


@router.post(
    "/{endpoint_id}/rotate-secret",
    response_model=RotatedSecret,
    responses=problem_responses(403, 404),
    summary="Rotate a webhook endpoint's secret",
)
async def rotate_secret(endpoint_id: str, runtime: RuntimeDep, user: UserDep) -> RotatedSecret:
    """A new signing secret, shown this once. For `TASKLIGHT_WEBHOOK_SECRET_OVERLAP_S` the old
    one signs too (each delivery carries both signatures), so receivers can switch over."""
    endpoint = await _owned(runtime, user, endpoint_id)
    now = utcnow()
    secret = new_secret()
    overlap_until = now + timedelta(seconds=runtime.settings.webhook_secret_overlap_s)
    rotated = await runtime.store.webhooks.endpoints.rotate(
        endpoint.id, EndpointSecret(secret=secret, created_at=now), overlap_until
    )
    if rotated is None:
        raise ProblemError("urn:tasklight:problem:not-found", f"no webhook {endpoint_id}")
    return RotatedSecret(
        secret=secret,
        previous_secret_expires_at=rotated.previous_secret_expires_at(now),
        endpoint=EndpointOut.of(rotated),
    )


@router.get(
    "/{endpoint_id}/deliveries",
    response_model=DeliveryPage,
    responses=problem_responses(404, 422),
    summary="List a webhook endpoint's deliveries and their attempts",
)
async def list_deliveries(
    endpoint_id: str,
    runtime: RuntimeDep,
    user: UserDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="`next` of the previous page")] = None,
) -> DeliveryPage:
    """Each delivery, newest first, with every attempt: when, status code, latency, error."""
    endpoint = await _owned(runtime, user, endpoint_id)
    before = _parse_cursor(cursor) if cursor is not None else None
    found = await runtime.store.webhooks.deliveries.page(
        endpoint.id, limit=limit + 1, before=before
    )
    next_url = None
    if len(found) > limit:
        found = found[:limit]
        last = found[-1]
        params = {"limit": str(limit), "cursor": f"{last.created_at.isoformat()}~{last.id}"}
        next_url = f"{API_PREFIX}/webhooks/{endpoint.id}/deliveries?{urlencode(params)}"
    return DeliveryPage(results=[DeliveryOut.of(d) for d in found], next=next_url)


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    at, _, last_id = cursor.partition("~")
    try:
        parsed = datetime.fromisoformat(at)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or not last_id.startswith("msg_"):
        raise ProblemError(
            "urn:tasklight:problem:invalid-request",
            "cursor: not a cursor from a previous page",
            errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "value_error"}],
        )
    return parsed, last_id


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=DeliveryOut,
    responses=problem_responses(403, 404, 409),
    summary="Send a delivery again",
)
async def replay_delivery(
    endpoint_id: str, delivery_id: str, runtime: RuntimeDep, user: UserDep
) -> DeliveryOut:
    """Send the delivery again now, with the same `webhook-id` and body and a new retry
    window, whatever became of it (a receiver that lost it, a failed one after a fix)."""
    endpoint = await _owned(runtime, user, endpoint_id)
    deliveries = runtime.store.webhooks.deliveries
    delivery = await deliveries.get(delivery_id)
    if delivery is None or delivery.endpoint_id != endpoint.id:
        raise ProblemError("urn:tasklight:problem:not-found", f"no delivery {delivery_id}")
    try:
        replayed = await deliveries.replay(delivery.id, utcnow())
    except InFlight:
        raise ProblemError(
            "urn:tasklight:problem:delivery-in-flight",
            "an attempt of this delivery is under way; replay it once it ended",
            headers={"Retry-After": str(int(runtime.settings.webhook_timeout_s) + 1)},
        ) from None
    if replayed is None:
        raise ProblemError("urn:tasklight:problem:not-found", f"no delivery {delivery_id}")
    if not endpoint.enabled:
        # Held until the endpoint is enabled again, like the rest of its deliveries.
        await deliveries.pause(endpoint.id, utcnow())
        replayed = await deliveries.get(delivery.id) or replayed
    return DeliveryOut.of(replayed)
