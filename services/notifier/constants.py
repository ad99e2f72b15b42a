"""The numbers the notifier and its clients share: close codes and the resume constants.

This is the one definition. The notifier closes connections with these codes; the AsyncAPI
contract and docs/protocol.md list them; `python -m services.contracts` renders them, with the
resume constants, into the constants of the two clients (`clients/js/protocol.js` and
`clients/python/src/tasklight/protocol.py`), and a unit test fails when a rendered file is stale.
Nothing here imports the rest of the notifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class CloseCode(IntEnum):
    """Every WebSocket close code the notifier or a client uses (docs/protocol.md)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TOO_SLOW = 4000
    NO_PONG = 4001
    OFFLINE = 4002
    UNAUTHORIZED = 4401
    REVOKED = 4403
    TOO_MANY_CONNECTIONS = 4429


@dataclass(frozen=True)
class CloseRule:
    """When a code is used and what a client does about it."""

    #: When; may name settings in braces (`{ws_queue_limit}`), filled in from the deployment's.
    when: str
    #: What the client should do.
    then: str
    #: Whether a client reconnects by itself (with backoff) after it.
    reconnect: bool
    #: Who closes with it: "server" (the notifier) or "client".
    by: str = "server"


CLOSE_RULES: dict[CloseCode, CloseRule] = {
    CloseCode.NORMAL: CloseRule("normal close", "nothing", reconnect=False),
    CloseCode.GOING_AWAY: CloseRule(
        "the notifier is shutting down",
        "reconnect with backoff and resume with `since`",
        reconnect=True,
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseRule(
        "a frame over {ws_max_message_bytes} bytes was received (`TASKLIGHT_WS_MAX_MESSAGE_BYTES`)",
        "do not send such frames",
        reconnect=False,
    ),
    CloseCode.INTERNAL_ERROR: CloseRule(
        "no pong to the server's ping within {ws_ping_interval_s:g} s, or an internal error",
        "reconnect and resume",
        reconnect=True,
    ),
    CloseCode.TOO_SLOW: CloseRule(
        "the client fell too far behind: {ws_queue_limit} distinct updates or "
        "{ws_queue_limit_bytes} bytes waiting (`TASKLIGHT_WS_QUEUE_LIMIT`, "
        "`TASKLIGHT_WS_QUEUE_LIMIT_BYTES`), or its send queue did not drain within "
        "{ws_drain_timeout_s:g} s (`TASKLIGHT_WS_DRAIN_TIMEOUT_S`)",
        "reconnect and resume with `since`",
        reconnect=True,
    ),
    CloseCode.NO_PONG: CloseRule(
        "a client gives up on its connection: no `pong` to its `ping` within `PONG_TIMEOUT_S`",
        "reconnect and resume",
        reconnect=True,
        by="client",
    ),
    CloseCode.OFFLINE: CloseRule(
        "a browser client gives up on its connection: the browser says it went offline",
        "reconnect and resume once online again",
        reconnect=True,
        by="client",
    ),
    CloseCode.UNAUTHORIZED: CloseRule(
        "no credentials within {ws_auth_timeout_s:g} s (`TASKLIGHT_WS_AUTH_TIMEOUT_S`), wrong "
        "ones, a used or expired ticket, or a first message that is not `auth`",
        "do not reconnect until signed in again (a new ticket or token)",
        reconnect=False,
    ),
    CloseCode.REVOKED: CloseRule(
        "the connection's credentials went away while it was open: its API token was revoked, "
        "its session signed out or expired, or its user deleted or given another role; noticed "
        "within {token_cache_s:g} s (`TASKLIGHT_TOKEN_CACHE_S`)",
        "do not reconnect until signed in again (a new ticket or token)",
        reconnect=False,
    ),
    CloseCode.TOO_MANY_CONNECTIONS: CloseRule(
        "the user holds {ws_max_connections_per_user} connections on this notifier "
        "(`TASKLIGHT_WS_MAX_CONNECTIONS_PER_USER`)",
        "close another connection first",
        reconnect=False,
    ),
}


@dataclass(frozen=True)
class ResumeConstant:
    """One number both clients use to reconnect and resume; seconds when `name` ends in `_S`."""

    name: str
    value: float | int
    doc: str


#: How the clients reconnect and resume, identical in both (the JavaScript client has each
#: `_S` constant as `_MS`, in milliseconds).
RESUME: tuple[ResumeConstant, ...] = (
    ResumeConstant("BACKOFF_INITIAL_S", 0.25, "The wait before the first reconnection attempt."),
    ResumeConstant(
        "BACKOFF_MAX_S", 15.0, "The longest wait between attempts (each doubles the last)."
    ),
    ResumeConstant(
        "BACKOFF_JITTER",
        0.5,
        "Share of each wait that is random (equal jitter), so that clients dropped together do "
        "not come back together.",
    ),
    ResumeConstant(
        "PING_INTERVAL_S",
        3.0,
        "The time between a client's own pings: a connection that went silently dead (a "
        "network gone, a laptop asleep) is noticed within this and `PONG_TIMEOUT_S`.",
    ),
    ResumeConstant(
        "PONG_TIMEOUT_S", 2.0, "How long a client waits for a pong before it closes with 4001."
    ),
    ResumeConstant(
        "SINCE_WINDOW_S",
        60.0,
        'A `scope: "all"` resume names in `since` the pending tasks it holds and those updated '
        "within this time before the newest `updated_at` it holds.",
    ),
    ResumeConstant(
        "MAX_SINCE_ENTRIES",
        800,
        "Most `since` entries in one subscribe, so the frame stays well under 64 KiB.",
    ),
)


def no_reconnect() -> tuple[CloseCode, ...]:
    """The codes after which a client does not reconnect by itself."""
    return tuple(code for code, rule in CLOSE_RULES.items() if not rule.reconnect)
