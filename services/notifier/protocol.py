"""The WebSocket messages clients send (docs/protocol.md): one pydantic model per `type`, which
is both the parser and the contract.

`parse` turns a text frame into one of these models, or raises `ProtocolError` saying what is
wrong; the AsyncAPI contract (`services/contracts/websocket.py`) renders its client message
schemas from the same models, so what is documented and what is accepted cannot drift apart.
Also here: the problem types an `error` message names, and the protocol's limits.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.jsonlimits import MAX_DOCUMENT_DEPTH, JsonRefused, loads

#: Task ids one `subscribe` may name.
MAX_TASK_IDS = 1000
#: Longest subscription (or ping) id.
MAX_ID_CHARS = 64
#: Longest ticket or token an `auth` message may carry.
MAX_SECRET_CHARS = 512

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


def _present_not_null(value: object) -> object:
    # Runs only for a member that is present: an absent one takes its default without it.
    if value is None:
        raise PydanticCustomError("not_null", "give a value or leave the member out, not null")
    return value


def _absent_by_default(schema: dict[str, Any]) -> None:
    # A member that is either present or absent (never null) has no default worth showing.
    schema.pop("default", None)


#: A client-chosen id of a subscription or a ping.
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
#: A ticket or an API token sent in `auth`.
Secret = Annotated[str, StringConstraints(min_length=1, max_length=MAX_SECRET_CHARS)]
#: The task ids one `subscribe` names.
TaskIds = Annotated[list[str], Field(min_length=1, max_length=MAX_TASK_IDS)]


T = TypeVar("T")

if TYPE_CHECKING:
    #: A member that may be absent (None in Python), but is never null on the wire.
    Absent = Annotated[T | None, ...]
else:

    class Absent:
        """A member that may be absent (None in Python), but is never null on the wire: the
        schema has no null, and the parser refuses one."""

        def __class_getitem__(cls, annotation: Any) -> Any:
            return Annotated[annotation, BeforeValidator(_present_not_null)]


class ClientMessage(BaseModel):
    """A JSON text frame from a client: one object with a `type`; members the notifier does not
    know are ignored, so the schemas allow them."""

    model_config = ConfigDict(extra="allow", frozen=True)


class SubscribeMessage(ClientMessage):
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
    tasks: Absent[TaskIds] = Field(
        default=None, description="the task ids to follow", json_schema_extra=_absent_by_default
    )
    scope: Absent[Literal["all"]] = Field(
        default=None,
        description="every task the user may see, including later ones",
        json_schema_extra=_absent_by_default,
    )
    since: dict[str, StrictInt] | None = Field(
        default=None, description="task id → the version the client holds (not sent again)"
    )
    since_ts: Absent[datetime] = Field(
        default=None,
        description='with scope "all": the newest updated_at the client holds',
        json_schema_extra=_absent_by_default,
    )

    @field_validator("since_ts", mode="before")
    @classmethod
    def _iso_time(cls, value: object) -> object:
        # Only ISO-8601 text, as documented (pydantic alone would also take a number); a time
        # without an offset is UTC.
        if value is None:
            return value
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        raise PydanticCustomError("iso_time", "must be an ISO-8601 time")

    @model_validator(mode="after")
    def _one_scope(self) -> SubscribeMessage:
        if (self.tasks is None) == (self.scope is None):
            raise PydanticCustomError("one_scope", "give exactly one of tasks and scope")
        if self.since_ts is not None and self.scope is None:
            raise PydanticCustomError("since_ts_scope", 'since_ts: only with scope "all"')
        return self

    @property
    def task_ids(self) -> tuple[str, ...] | None:
        """The named task ids without repeats, in order; None for `scope: "all"`."""
        return None if self.tasks is None else tuple(dict.fromkeys(self.tasks))

    @property
    def versions(self) -> dict[str, int]:
        """`since`, or nothing."""
        return dict(self.since or {})


class UnsubscribeMessage(ClientMessage):
    """Stop following a subscription."""

    type: Literal["unsubscribe"]
    id: ClientId


class PingMessage(ClientMessage):
    """Ask for a `pong` (the `id`, if any, is echoed)."""

    type: Literal["ping"]
    id: ClientId | None = None


class AuthMessage(ClientMessage):
    """Authenticate a connection whose handshake carried no credentials (first message only).

    With a single-use ticket from `POST /api/v1/ws-tickets`, or an API token.
    """

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["ticket"]}, {"required": ["token"]}]}
    )

    type: Literal["auth"]
    ticket: Absent[Secret] = Field(
        default=None,
        description="a single-use ticket from POST /api/v1/ws-tickets",
        json_schema_extra=_absent_by_default,
    )
    token: Absent[Secret] = Field(
        default=None,
        description="an API token",
        json_schema_extra=_absent_by_default,
        repr=False,
    )

    @model_validator(mode="after")
    def _one_credential(self) -> AuthMessage:
        if (self.ticket is None) == (self.token is None):
            raise PydanticCustomError(
                "one_credential", "auth: give exactly one of ticket and token"
            )
        return self


#: What clients send, in the order docs/protocol.md lists them.
CLIENT_MESSAGES: tuple[type[ClientMessage], ...] = (
    SubscribeMessage,
    UnsubscribeMessage,
    PingMessage,
    AuthMessage,
)
#: What `parse` returns.
Incoming = SubscribeMessage | UnsubscribeMessage | PingMessage | AuthMessage


def message_type(model: type[BaseModel]) -> str:
    """The `type` a model's messages carry."""
    annotation: Any = model.model_fields["type"].annotation
    (value,) = annotation.__args__
    return str(value)


_BY_TYPE: dict[str, type[ClientMessage]] = {message_type(m): m for m in CLIENT_MESSAGES}
_TYPES = ", ".join(_BY_TYPE)


def load(text: str) -> object:
    """The JSON value of a text frame by the one JSON rule (`shared.jsonlimits`: strict JSON,
    nested at most `MAX_DOCUMENT_DEPTH` levels); raises `ProtocolError` (malformed) if not."""
    try:
        return loads(text, max_depth=MAX_DOCUMENT_DEPTH)
    except JsonRefused as exc:
        raise ProtocolError("malformed-message", f"the frame is not JSON we take: {exc}") from None


def parse(text: str) -> Incoming:
    """The client message in a text frame; raises `ProtocolError` saying what is wrong."""
    data = load(text)
    if not isinstance(data, dict):
        raise ProtocolError("malformed-message", "the frame is not a JSON object")
    raw_id = data.get("id")
    message_id = raw_id if isinstance(raw_id, str) else None
    kind = data.get("type")
    model = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise ProtocolError(
            "malformed-message", f"unknown message type {kind!r}; expected {_TYPES}", message_id
        )
    try:
        message = model.model_validate(data)
    except ValidationError as exc:
        raise ProtocolError("invalid-message", _detail(exc), message_id) from None
    assert isinstance(message, Incoming)
    return message


def _detail(exc: ValidationError) -> str:
    """What is wrong, member by member (`tasks.0: Input should be a valid string`)."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False):
        # A model-level rule names its members itself (an empty `loc`).
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(dict.fromkeys(parts))
