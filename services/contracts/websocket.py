"""The AsyncAPI document of the notifier's WebSocket protocol (docs/protocol.md).

Message schemas come from the models the notifier parses with (`services.notifier.protocol`) and
the shapes of what it sends (`services.notifier.outbound`, with the task model); the server's
examples come from the notifier's own encoders, and the close codes from its one definition
(`services.notifier.constants`), so none of them can drift. Only the envelope (info, server,
channel, operations) is written here. The document describes the notifier: what clients send it
is `receive`, what it pushes is `send`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from services.contracts.defaults import default_settings
from services.notifier.app import WS_PATH
from services.notifier.constants import CLOSE_RULES, CloseCode
from services.notifier.hub import render
from services.notifier.outbound import (
    SERVER_MESSAGES,
    authenticated_message,
    deleted_message,
    error_message,
    pong_message,
    subscribed_message,
    task_message,
    unsubscribed_message,
)
from services.notifier.protocol import (
    CLIENT_MESSAGES,
    PROBLEM,
    AuthMessage,
    PingMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    message_type,
)
from shared.auth import SESSION_COOKIE
from shared.records import StoredTask
from shared.settings import Settings

CHANNEL = "socket"
_SCHEMAS = "#/components/schemas/{model}"
#: A task id as the examples show it.
_TASK_ID = "01a20245-1f44-7dc7-b64e-4fc770022ace"


def close_codes(settings: Settings) -> list[dict[str, Any]]:
    """How connections are closed: code, name, who closes, when, what the client should do,
    and whether it reconnects by itself."""
    values = settings.model_dump()
    return [
        {
            "code": code.value,
            "name": code.name,
            "by": rule.by,
            "when": rule.when.format(**values),
            "then": rule.then,
            "reconnect": rule.reconnect,
        }
        for code, rule in sorted(CLOSE_RULES.items())
    ]


def _example_task() -> bytes:
    """A task as the notifier renders it (through its own renderer, from a stored document)."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    stored = {
        "_id": _TASK_ID,
        "name": "test.count",
        "state": "running",
        "created_at": at,
        "started_at": at,
        "updated_at": at,
        "args": {"rounds": 3, "round_s": 0.2},
        "progress_reports": [
            {"message": "Counting", "code": "test.count", "done": 1, "total": 3, "suffix": "rounds"}
        ],
        "worker": {"name": "1234@host", "last_heartbeat": at},
        "owner": "alice",
        "runs": 1,
        "version": 3,
    }
    return render(StoredTask.model_validate(stored))


def _client_examples() -> dict[type[BaseModel], list[dict[str, Any]]]:
    return {
        SubscribeMessage: [
            {"type": "subscribe", "id": "s1", "tasks": [_TASK_ID]},
            {"type": "subscribe", "id": "s2", "scope": "all", "since": {_TASK_ID: 3}},
        ],
        UnsubscribeMessage: [{"type": "unsubscribe", "id": "s1"}],
        PingMessage: [{"type": "ping", "id": "p1"}],
        AuthMessage: [{"type": "auth", "ticket": "9Wz1h0mE5yq2vQ_6bTn3kLrA8sXcD4fJgUoPiYeRt7M"}],
    }


def server_examples() -> dict[str, list[bytes]]:
    """Frames the notifier's encoders produce, by message type (the tests validate them)."""
    return {
        "task": [task_message("s1", _example_task())],
        "subscribed": [subscribed_message("s1")],
        "deleted": [deleted_message("s1", _TASK_ID)],
        "unsubscribed": [unsubscribed_message("s1")],
        "pong": [pong_message("p1"), pong_message(None)],
        "authenticated": [authenticated_message("alice", "user")],
        "error": [
            error_message(f"{PROBLEM}not-found", f"no task {_TASK_ID}", "s1", tasks=[_TASK_ID]),
            error_message(f"{PROBLEM}malformed-message", "the frame is not a JSON object", "s1"),
        ],
    }


def _message(model: type[BaseModel], examples: list[dict[str, Any]]) -> dict[str, Any]:
    name = message_type(model)
    summary = (model.__doc__ or "").strip().splitlines()[0]
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": "application/json",
        "payload": {"$ref": _SCHEMAS.format(model=model.__name__)},
        "examples": [{"payload": example} for example in examples],
    }


def _schemas() -> dict[str, Any]:
    """Every message's JSON Schema (and the models they use), keyed by model name."""
    models: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in CLIENT_MESSAGES]
    models += [(m, "serialization") for m in SERVER_MESSAGES]
    _, top = models_json_schema(models, ref_template=_SCHEMAS)
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/channels/{CHANNEL}/messages/{name}"}


def _receive(name: str, summary: str, replies: list[str]) -> dict[str, Any]:
    return {
        "action": "receive",
        "channel": {"$ref": f"#/channels/{CHANNEL}"},
        "summary": summary,
        "messages": [_ref(name)],
        "reply": {
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "messages": [_ref(reply) for reply in replies],
        },
    }


def _description(settings: Settings) -> str:
    rows = "\n".join(
        f"| {c['code']} `{c['name']}` | {c['by']} | {c['when']} | {c['then']} |"
        for c in close_codes(settings)
    )
    return f"""\
The notifier pushes committed task changes to WebSocket clients (docs/protocol.md). Every frame is
a JSON text frame holding one object with a `type`; binary frames get an `unsupported-frame` error.

A connection acts as one user and is authenticated before any subscription: by a bearer token or
the web UI's session cookie (`{SESSION_COOKIE}`) in the handshake, or else by a first message
`auth` (a single-use ticket from `POST /api/v1/ws-tickets`, or an API token). A handshake whose
`Origin` is not in `TASKLIGHT_ALLOWED_ORIGINS` is refused with HTTP 403, one with several `Origin`
headers with HTTP 400. A connection whose credentials are revoked while it is open (token revoked,
session signed out, user deleted) is closed with {CloseCode.REVOKED.value}.

For one task, `task` messages arrive with `version` increasing; a client keeps the highest version
it holds per task and ignores anything not above it. After a reconnect it subscribes again with
`since` (and `since_ts` for `scope: "all"`) and gets every change it missed.

Limits: {settings.ws_max_subscriptions} subscriptions per connection
(`TASKLIGHT_WS_MAX_SUBSCRIPTIONS`; one more gets an `error` with status 429), frames of at most
{settings.ws_max_message_bytes} bytes; at most {settings.ws_queue_limit} updates or
{settings.ws_queue_limit_bytes} bytes waiting to be sent to one connection, and a backlog drained
within {settings.ws_drain_timeout_s:g} s (else {CloseCode.TOO_SLOW.value}).

## Close codes

| code | closed by | when | what the client should do |
| --- | --- | --- | --- |
{rows}
"""


def websocket_document(settings: Settings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the `/ws` channel."""
    settings = settings or default_settings()
    examples: dict[str, list[dict[str, Any]]] = {
        name: [json.loads(frame) for frame in frames] for name, frames in server_examples().items()
    }
    client_examples = _client_examples()
    messages = {message_type(m): _message(m, client_examples[m]) for m in CLIENT_MESSAGES}
    messages |= {message_type(m): _message(m, examples[message_type(m)]) for m in SERVER_MESSAGES}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "tasklight notifier WebSocket",
            "version": "1.0.0",
            "description": _description(settings),
        },
        "defaultContentType": "application/json",
        "servers": {
            "notifier": {
                "host": f"{settings.notifier_host}:{settings.notifier_port}",
                "protocol": "ws",
                "description": "The notifier (`TASKLIGHT_NOTIFIER_HOST`, "
                "`TASKLIGHT_NOTIFIER_PORT`); behind a proxy, `TASKLIGHT_NOTIFIER_PUBLIC_URL`.",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearer"},
                    {"$ref": "#/components/securitySchemes/session"},
                ],
            }
        },
        "channels": {
            CHANNEL: {
                "address": WS_PATH,
                "title": "The notifier's WebSocket",
                "description": "One connection per client; every message below travels on it.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {
                    "ws": {
                        "method": "GET",
                        "headers": {
                            "type": "object",
                            "properties": {
                                "Authorization": {
                                    "type": "string",
                                    "description": "`Bearer <API token>`",
                                },
                                "Cookie": {
                                    "type": "string",
                                    "description": f"`{SESSION_COOKIE}=…` (the web UI)",
                                },
                                "Origin": {
                                    "type": "string",
                                    "description": "browsers: must be an allowed origin",
                                },
                            },
                        },
                        "bindingVersion": "0.1.0",
                    }
                },
                "x-close-codes": close_codes(settings),
            }
        },
        "operations": {
            "subscribe": _receive(
                "subscribe",
                "Follow tasks: their current state (`task` messages, skipping those not above "
                "`since`), then `subscribed`, then every change",
                ["subscribed", "task", "error"],
            ),
            "unsubscribe": _receive("unsubscribe", "Stop following", ["unsubscribed", "error"]),
            "ping": _receive("ping", "Ask for a pong", ["pong", "error"]),
            "auth": _receive(
                "auth",
                f"Authenticate by a first message (else the connection closes with "
                f"{CloseCode.UNAUTHORIZED.value})",
                ["authenticated", "error"],
            ),
            "push": {
                "action": "send",
                "channel": {"$ref": f"#/channels/{CHANNEL}"},
                "summary": "Push each committed change to the subscriptions that match",
                "messages": [_ref("task"), _ref("deleted")],
            },
        },
        "components": {
            "schemas": _schemas(),
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token in the handshake's `Authorization` header.",
                },
                "session": {
                    "type": "httpApiKey",
                    "name": SESSION_COOKIE,
                    "in": "cookie",
                    "description": "The web UI's session cookie, sent by the browser when the "
                    "notifier is on the same site.",
                },
            },
        },
    }
