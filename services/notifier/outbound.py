"""The WebSocket messages the notifier sends (docs/protocol.md): their shapes, and their encoders.

The shapes (pydantic models, one per `type`) are the contract: the AsyncAPI document renders its
server message schemas from them. The encoders are the fast path: they write the JSON text of a
frame directly, as UTF-8 bytes ready for the socket; a task's JSON is rendered once per change
and its `task` frame built once per change and subscription id, then shared by every
connection that gets it. tests/unit/test_contracts.py holds the two together: every encoder's
output validates against its model's schema.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from services.notifier.protocol import PROBLEM_TYPES, ProtocolError
from shared.auth import Role
from shared.task import Task


def _absent_by_default(schema: dict[str, Any]) -> None:
    # A member that is either present or absent (never null) has no default worth showing.
    schema.pop("default", None)


class ServerMessage(BaseModel):
    """A JSON text frame from the notifier: one object with a `type`; clients ignore members
    they do not know, so the shapes allow them."""

    model_config = ConfigDict(extra="allow")


class TaskMessage(ServerMessage):
    """A task's current state, exactly as `GET /api/v1/tasks/{id}` shows it."""

    type: Literal["task"]
    sub: str = Field(description="the subscription it is sent for")
    task: Task


class DeletedMessage(ServerMessage):
    """A followed task was deleted."""

    type: Literal["deleted"]
    sub: str
    id: str = Field(description="the task id")


class SubscribedMessage(ServerMessage):
    """The subscription's initial state has been sent; what follows is live."""

    type: Literal["subscribed"]
    id: str


class UnsubscribedMessage(ServerMessage):
    """The subscription is gone."""

    type: Literal["unsubscribed"]
    id: str


class PongMessage(ServerMessage):
    """The answer to a `ping`."""

    type: Literal["pong"]
    id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="the ping's id, if it had one",
        json_schema_extra=_absent_by_default,
    )


class AuthenticatedMessage(ServerMessage):
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


class ErrorMessage(ServerMessage):
    """A message could not be served; the connection stays open."""

    type: Literal["error"]
    id: str | SkipJsonSchema[None] = Field(
        default=None,
        description="the offending message's id, if it had one",
        json_schema_extra=_absent_by_default,
    )
    problem: Problem


#: What the notifier sends.
SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (
    TaskMessage,
    SubscribedMessage,
    DeletedMessage,
    UnsubscribedMessage,
    PongMessage,
    AuthenticatedMessage,
    ErrorMessage,
)


# Encoders: the JSON text of each message, as UTF-8.


def _dump(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def task_message(sub_id: str, task_json: bytes) -> bytes:
    """A `task` message around a task already rendered as JSON (rendered once per change)."""
    return b'{"type":"task","sub":%s,"task":%s}' % (json.dumps(sub_id).encode(), task_json)


def deleted_message(sub_id: str, task_id: str) -> bytes:
    """A `deleted` message."""
    return _dump({"type": "deleted", "sub": sub_id, "id": task_id})


def subscribed_message(sub_id: str) -> bytes:
    """The end of a subscription's initial state."""
    return _dump({"type": "subscribed", "id": sub_id})


def unsubscribed_message(sub_id: str) -> bytes:
    """The confirmation of an `unsubscribe`."""
    return _dump({"type": "unsubscribed", "id": sub_id})


def authenticated_message(user: str, role: str) -> bytes:
    """The answer to a successful `auth`."""
    return _dump({"type": "authenticated", "user": user, "role": role})


def pong_message(ping_id: str | None) -> bytes:
    """The answer to a `ping`."""
    return _dump({"type": "pong"} if ping_id is None else {"type": "pong", "id": ping_id})


def error_message(
    problem_type: str, detail: str, message_id: str | None = None, **extra: Any
) -> bytes:
    """An `error` message with RFC 9457 problem details (`extra`: extension members)."""
    status, title = PROBLEM_TYPES[problem_type]
    problem = {"type": problem_type, "title": title, "status": status, "detail": detail, **extra}
    message: dict[str, Any] = {"type": "error", "problem": problem}
    if message_id is not None:
        message["id"] = message_id
    return _dump(message)


def error_for(exc: ProtocolError) -> bytes:
    """The `error` message for a `ProtocolError`."""
    return error_message(exc.problem_type, exc.detail, exc.message_id)
