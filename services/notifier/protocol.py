"""The WebSocket messages of docs/protocol.md: parsing what clients send, encoding what we send.

Pure functions, no sockets: a frame's text goes in, a message object (or a `ProtocolError`) comes
out; the encoders return the JSON text of a frame.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.jsonlimits import MAX_DOCUMENT_DEPTH, JsonRefused, loads

#: Task ids one `subscribe` may name.
MAX_TASK_IDS = 1000
#: Longest subscription (or ping) id.
MAX_ID_CHARS = 64

PROBLEM = "urn:tasklight:problem:"

#: problem type → (status, title): the one table of what can go wrong on the socket.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    f"{PROBLEM}malformed-message": (400, "The message is not a JSON object of a known type"),
    f"{PROBLEM}invalid-message": (422, "The message has missing or wrong fields"),
    f"{PROBLEM}not-found": (404, "Not found"),
    f"{PROBLEM}duplicate-subscription": (409, "A subscription with this id is already live"),
    f"{PROBLEM}unknown-subscription": (404, "No live subscription has this id"),
    f"{PROBLEM}unsupported-frame": (415, "Only JSON text frames are accepted"),
    f"{PROBLEM}too-many-subscriptions": (429, "This connection holds its most subscriptions"),
    f"{PROBLEM}already-authenticated": (409, "The connection is authenticated already"),
}


class ProtocolError(ValueError):
    """A client message that cannot be served; becomes an `error` message, the socket stays."""

    def __init__(self, kind: str, detail: str, message_id: str | None = None) -> None:
        super().__init__(detail)
        self.problem_type = f"{PROBLEM}{kind}"
        self.detail = detail
        self.message_id = message_id


@dataclass(frozen=True)
class Subscribe:
    """Follow some tasks (`task_ids`), or every task of the user (`task_ids` None)."""

    id: str
    task_ids: tuple[str, ...] | None
    since: dict[str, int] = field(default_factory=dict)
    since_ts: datetime | None = None


@dataclass(frozen=True)
class Unsubscribe:
    """Stop following a subscription."""

    id: str


@dataclass(frozen=True)
class Ping:
    """Ask for a `pong`."""

    id: str | None


@dataclass(frozen=True)
class Auth:
    """Authenticate a connection whose handshake carried no credentials: a ticket from
    `POST /api/v1/ws-tickets`, or an API token."""

    ticket: str | None
    token: str | None = field(default=None, repr=False)


ClientMessage = Subscribe | Unsubscribe | Ping | Auth


def parse(text: str) -> ClientMessage:
    """The client message in a text frame; raises `ProtocolError` saying what is wrong."""
    try:
        data = loads(text, max_depth=MAX_DOCUMENT_DEPTH)
    except JsonRefused as exc:
        raise ProtocolError("malformed-message", f"the frame is not JSON we take: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("malformed-message", "the frame is not a JSON object")
    raw_id = data.get("id")
    message_id = raw_id if isinstance(raw_id, str) else None
    kind = data.get("type")
    if kind == "ping":
        if raw_id is not None and not _valid_id(raw_id):
            raise ProtocolError("invalid-message", _ID_RULE, message_id)
        return Ping(id=message_id)
    if kind == "unsubscribe":
        return Unsubscribe(id=_required_id(data))
    if kind == "subscribe":
        return _parse_subscribe(data, _required_id(data))
    if kind == "auth":
        return _parse_auth(data)
    raise ProtocolError(
        "malformed-message",
        f"unknown message type {kind!r}; expected auth, subscribe, unsubscribe or ping",
        message_id,
    )


_ID_RULE = f"id: must be a string of 1 to {MAX_ID_CHARS} characters"


def _valid_id(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID_CHARS


def _required_id(data: dict[str, Any]) -> str:
    value = data.get("id")
    if not _valid_id(value):
        raise ProtocolError("invalid-message", _ID_RULE, value if isinstance(value, str) else None)
    assert isinstance(value, str)
    return value


def _parse_subscribe(data: dict[str, Any], sub_id: str) -> Subscribe:
    tasks, scope = data.get("tasks"), data.get("scope")
    if (tasks is None) == (scope is None):
        raise ProtocolError("invalid-message", "give exactly one of tasks and scope", sub_id)
    task_ids: tuple[str, ...] | None = None
    if scope is not None:
        if scope != "all":
            raise ProtocolError("invalid-message", 'scope: must be "all"', sub_id)
    else:
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ProtocolError("invalid-message", "tasks: must be a list of task ids", sub_id)
        if not 1 <= len(tasks) <= MAX_TASK_IDS:
            raise ProtocolError(
                "invalid-message", f"tasks: must name 1 to {MAX_TASK_IDS} ids", sub_id
            )
        task_ids = tuple(dict.fromkeys(tasks))
    since = data.get("since", {})
    if since is None:
        since = {}
    if not isinstance(since, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in since.values()
    ):
        raise ProtocolError(
            "invalid-message", "since: must map task ids to integer versions", sub_id
        )
    since_ts = None
    raw_ts = data.get("since_ts")
    if raw_ts is not None:
        if task_ids is not None:
            raise ProtocolError("invalid-message", 'since_ts: only with scope "all"', sub_id)
        since_ts = _parse_time(raw_ts, sub_id)
    return Subscribe(id=sub_id, task_ids=task_ids, since=since, since_ts=since_ts)


#: Longest ticket or token an `auth` message may carry.
MAX_SECRET_CHARS = 512


def _parse_auth(data: dict[str, Any]) -> Auth:
    ticket, token = data.get("ticket"), data.get("token")
    if (ticket is None) == (token is None):
        raise ProtocolError("invalid-message", "auth: give exactly one of ticket and token")
    secret = ticket if ticket is not None else token
    if not isinstance(secret, str) or not 1 <= len(secret) <= MAX_SECRET_CHARS:
        raise ProtocolError(
            "invalid-message", "auth: the credential must be a string of 1 to 512 characters"
        )
    return Auth(ticket=ticket, token=token)


def _parse_time(value: object, sub_id: str) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ProtocolError("invalid-message", "since_ts: must be an ISO-8601 time", sub_id)


def _dump(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def task_message(sub_id: str, task_json: str) -> str:
    """A `task` message around a task already rendered as JSON (rendered once per change)."""
    return f'{{"type":"task","sub":{json.dumps(sub_id)},"task":{task_json}}}'


def deleted_message(sub_id: str, task_id: str) -> str:
    """A `deleted` message."""
    return _dump({"type": "deleted", "sub": sub_id, "id": task_id})


def subscribed_message(sub_id: str) -> str:
    """The end of a subscription's initial state."""
    return _dump({"type": "subscribed", "id": sub_id})


def unsubscribed_message(sub_id: str) -> str:
    """The confirmation of an `unsubscribe`."""
    return _dump({"type": "unsubscribed", "id": sub_id})


def authenticated_message(user: str, role: str) -> str:
    """The answer to a successful `auth`."""
    return _dump({"type": "authenticated", "user": user, "role": role})


def pong_message(ping_id: str | None) -> str:
    """The answer to a `ping`."""
    return _dump({"type": "pong"} if ping_id is None else {"type": "pong", "id": ping_id})


def error_message(
    problem_type: str, detail: str, message_id: str | None = None, **extra: Any
) -> str:
    """An `error` message with RFC 9457 problem details (`extra`: extension members)."""
    status, title = PROBLEM_TYPES[problem_type]
    problem = {"type": problem_type, "title": title, "status": status, "detail": detail, **extra}
    message: dict[str, Any] = {"type": "error", "problem": problem}
    if message_id is not None:
        message["id"] = message_id
    return _dump(message)


def error_for(exc: ProtocolError) -> str:
    """The `error` message for a `ProtocolError`."""
    return error_message(exc.problem_type, exc.detail, exc.message_id)
