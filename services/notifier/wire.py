"""The WebSocket messages of docs/protocol.md as JSON shapes (pydantic models), one per `type`.

They describe the wire for the AsyncAPI contract (`services/contracts/websocket.py`); the notifier
itself parses with `protocol.parse` and encodes with the `protocol.*_message` builders.
tests/unit/test_contracts.py holds the two together: every builder's output validates against
its model's schema, and `parse` accepts every message these shapes allow.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from services.notifier.protocol import MAX_ID_CHARS, MAX_SECRET_CHARS, MAX_TASK_IDS, PROBLEM_TYPES
from shared.auth import Role
from shared.task import Task

#: A client-chosen id of a subscription or a ping.
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
#: A ticket or an API token sent in `auth`.
Secret = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SECRET_CHARS)]
#: The task ids one `subscribe` names.
TaskIds = Annotated[list[str], Field(min_length=1, max_length=MAX_TASK_IDS)]


def _absent_by_default(schema: dict[str, Any]) -> None:
    # A member that is either present or absent (never null) has no default worth showing.
    schema.pop("default", None)


class WireMessage(BaseModel):
    """A JSON text frame: one object with a `type`; members the notifier does not know are
    ignored, so the shapes allow them."""

    model_config = ConfigDict(extra="allow")


# Client → server.


class AuthMessage(WireMessage):
    """Authenticate a connection whose handshake carried no credentials (first message only)."""

    # Exactly one of the two; null counts as absent for the notifier, so the shape has no null.
    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["ticket"]}, {"required": ["token"]}]}
    )

    type: Literal["auth"]
    ticket: Secret | SkipJsonSchema[None] = Field(
        default=None,
        description="a single-use ticket from POST /api/v1/ws-tickets",
        json_schema_extra=_absent_by_default,
    )
    token: Secret | SkipJsonSchema[None] = Field(
        default=None, description="an API token", json_schema_extra=_absent_by_default
    )


class SubscribeMessage(WireMessage):
    """Follow some tasks (`tasks`) or every task the user may see (`scope: "all"`)."""

    # Exactly one of `tasks` and `scope`; `since_ts` only with `scope` (JSON Schema draft 7, the
    # dialect AsyncAPI 3.0 builds on, spells that `dependencies`).
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [{"required": ["tasks"]}, {"required": ["scope"]}],
            "dependencies": {"since_ts": ["scope"]},
        }
    )

    type: Literal["subscribe"]
    id: ClientId = Field(description="unique among the connection's live subscriptions")
    tasks: TaskIds | SkipJsonSchema[None] = Field(
        default=None, description="the task ids to follow", json_schema_extra=_absent_by_default
    )
    scope: Literal["all"] | SkipJsonSchema[None] = Field(
        default=None,
        description="every task the user may see, including later ones",
        json_schema_extra=_absent_by_default,
    )
    since: dict[str, int] | None = Field(
        default=None, description="task id → the version the client holds (not sent again)"
    )
    since_ts: datetime | SkipJsonSchema[None] = Field(
        default=None,
        description='with scope "all": the newest updated_at the client holds',
        json_schema_extra=_absent_by_default,
    )


class UnsubscribeMessage(WireMessage):
    """Stop following a subscription."""

    type: Literal["unsubscribe"]
    id: ClientId


class PingMessage(WireMessage):
    """Ask for a `pong` (the `id`, if any, is echoed)."""

    type: Literal["ping"]
    id: ClientId | None = None


# Server → client.


class TaskMessage(WireMessage):
    """A task's current state, exactly as `GET /api/v1/tasks/{id}` shows it."""

    type: Literal["task"]
    sub: str = Field(description="the subscription it is sent for")
    task: Task


class DeletedMessage(WireMessage):
    """A followed task was deleted."""

    type: Literal["deleted"]
    sub: str
    id: str = Field(description="the task id")


class SubscribedMessage(WireMessage):
    """The subscription's initial state has been sent; what follows is live."""

    type: Literal["subscribed"]
    id: str


class UnsubscribedMessage(WireMessage):
    """The subscription is gone."""

    type: Literal["unsubscribed"]
    id: str


class PongMessage(WireMessage):
    """The answer to a `ping`."""

    type: Literal["pong"]
    id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="the ping's id, if it had one",
        json_schema_extra=_absent_by_default,
    )


class AuthenticatedMessage(WireMessage):
    """The answer to a successful `auth`."""

    type: Literal["authenticated"]
    user: str
    role: Role


class Problem(BaseModel):
    """RFC 9457 problem details; `not-found` adds `tasks`, the ids that get no data."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(json_schema_extra={"enum": [*sorted(PROBLEM_TYPES)]})
    title: str
    status: int
    detail: str
    tasks: list[str] | SkipJsonSchema[None] = Field(
        default=None, description="not-found: the missing ids", json_schema_extra=_absent_by_default
    )


class ErrorMessage(WireMessage):
    """A message could not be served; the connection stays open."""

    type: Literal["error"]
    id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="the offending message's id, if it had one",
        json_schema_extra=_absent_by_default,
    )
    problem: Problem


#: What clients send, in the order docs/protocol.md lists them.
CLIENT_MESSAGES: tuple[type[WireMessage], ...] = (
    SubscribeMessage,
    UnsubscribeMessage,
    PingMessage,
    AuthMessage,
)
#: What the notifier sends.
SERVER_MESSAGES: tuple[type[WireMessage], ...] = (
    TaskMessage,
    SubscribedMessage,
    DeletedMessage,
    UnsubscribedMessage,
    PongMessage,
    AuthenticatedMessage,
    ErrorMessage,
)


def message_type(model: type[WireMessage]) -> str:
    """The `type` a model's messages carry."""
    annotation: Any = model.model_fields["type"].annotation
    (value,) = annotation.__args__
    return str(value)
