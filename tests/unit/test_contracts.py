"""The contracts in docs/contracts/ are what the code renders, each is a sound document, and
each says what the code really does on the wire."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import re
import typing
from functools import cache
from typing import Any, cast
from unittest.mock import MagicMock
from urllib.parse import unquote

import pytest
from faststream.rabbit import RabbitBroker, RabbitExchange, RabbitQueue
from jsonschema import Draft7Validator
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from services.contracts import CONTRACTS, CONTRACTS_DIR, render
from services.contracts.clients import GENERATED, JS_PATH, PYTHON_PATH, ROOT
from services.contracts.defaults import default_settings
from services.contracts.websocket import server_examples
from services.notifier import outbound, protocol
from services.notifier.constants import CLOSE_RULES, RESUME, CloseCode, no_reconnect
from shared.commands import Commands
from shared.store import TaskStore
from shared.topology import Topology

ASYNCAPI = ("asyncapi-broker.json", "asyncapi-websocket.json")


@cache
def rendered(name: str) -> dict[str, Any]:
    """A contract as the code renders it now (once per test run)."""
    return CONTRACTS[name]()


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The target of a local `$ref` (a JSON pointer in a URI fragment), following a target
    that is itself a reference."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    node: Any = document
    for token in ref[2:].split("/"):
        key = unquote(token).replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {key!r} is not under an object"
        assert key in node, f"{ref}: no {key!r}"
        node = node[key]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return resolve(document, node["$ref"])
    return node


def refs(node: Any) -> list[str]:
    """Every `$ref` value anywhere in a document."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in refs(item)]
    return []


def payload_validator(document: dict[str, Any], message: dict[str, Any]) -> Draft7Validator:
    """A validator of a message's payload, its references resolved in the document."""
    return Draft7Validator({**message["payload"], "components": document["components"]})


def messages_of(document: dict[str, Any], action: str) -> dict[str, dict[str, Any]]:
    """Message name → message, for what travels in the direction of `action`: the messages of
    operations with that action, and the replies of the others."""
    found: dict[str, dict[str, Any]] = {}
    for operation in document["operations"].values():
        if operation["action"] == action:
            travelling = operation["messages"]
        else:
            travelling = operation.get("reply", {}).get("messages", [])
        for ref in travelling:
            found[ref["$ref"].rsplit("/", 1)[-1]] = resolve(document, ref["$ref"])
    return found


# Up to date.


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_the_committed_contract_is_what_the_code_renders(name: str) -> None:
    path = CONTRACTS_DIR / name
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    now = render(rendered(name))
    if committed != now:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            now.splitlines(keepends=True),
            f"docs/contracts/{name} (committed)",
            f"docs/contracts/{name} (rendered from the code)",
        )
        pytest.fail(
            f"docs/contracts/{name} is not what the code renders: run `make contracts` and "
            f"commit the diff.\n{''.join(list(diff)[:80])}",
            pytrace=False,
        )


@pytest.mark.parametrize("path", sorted(GENERATED), ids=str)
def test_the_committed_client_constants_are_what_the_code_renders(path: Any) -> None:
    file = ROOT / path
    committed = file.read_text(encoding="utf-8") if file.is_file() else ""
    now = GENERATED[path]()
    if committed != now:
        diff = difflib.unified_diff(
            committed.splitlines(keepends=True),
            now.splitlines(keepends=True),
            f"{path} (committed)",
            f"{path} (rendered from services/notifier/constants.py)",
        )
        pytest.fail(
            f"{path} is not what the code renders: run `make contracts` and commit the diff."
            f"\n{''.join(list(diff)[:80])}",
            pytrace=False,
        )


def _generated_python() -> Any:
    """The committed Python client constants, imported from their file."""
    spec = importlib.util.spec_from_file_location("generated_protocol", ROOT / PYTHON_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_clients_get_every_close_code_and_the_same_resume_constants() -> None:
    js = (ROOT / JS_PATH).read_text(encoding="utf-8")
    js_codes = dict(re.findall(r"^  (\w+): (\d+),$", js, re.MULTILINE))
    js_numbers = {
        name: float(value.replace("_", ""))
        for name, value in re.findall(r"^export const (\w+) = ([\d._]+);$", js, re.MULTILINE)
    }
    python = _generated_python()

    assert js_codes == {code.name: str(code.value) for code in CloseCode}
    assert {c.name: c.value for c in python.CloseCode} == {c.name: c.value for c in CloseCode}
    for constant in RESUME:
        assert getattr(python, constant.name) == constant.value
        if constant.name.endswith("_S"):
            assert js_numbers[constant.name.removesuffix("_S") + "_MS"] == constant.value * 1000
        else:
            assert js_numbers[constant.name] == constant.value
    assert {c.value for c in python.NO_RECONNECT} == {c.value for c in no_reconnect()}


def test_the_contracts_ignore_the_environment_they_are_rendered_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLIGHT_NAMESPACE", "elsewhere")
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@broker.invalid:5673/")
    monkeypatch.setenv("TASKLIGHT_NOTIFIER_PORT", "9")
    monkeypatch.setenv("TASKLIGHT_WS_MAX_SUBSCRIPTIONS", "3")
    monkeypatch.setenv("TASKLIGHT_WORKER_NAME", "somebody")
    for name, build in CONTRACTS.items():
        assert render(build()) == render(rendered(name)), name


# Sound documents.


def test_the_openapi_document_is_valid_openapi() -> None:
    document = rendered("openapi.json")
    validate_openapi(cast(Any, document))
    assert "/api/v1/tasks" in document["paths"]


@pytest.mark.parametrize("name", ASYNCAPI)
def test_the_asyncapi_document_is_sound(name: str) -> None:
    document = rendered(name)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"]
    assert document["info"]["version"]
    assert document["channels"]
    assert document["operations"]
    unresolved = []
    for ref in refs(document):
        try:
            resolve(document, ref)
        except AssertionError as exc:
            unresolved.append(str(exc))
    assert unresolved == []
    for key, operation in document["operations"].items():
        assert operation["action"] in ("send", "receive"), key
        channel = operation["channel"]["$ref"]
        for message in operation["messages"]:
            # An operation may only name messages of its own channel.
            assert message["$ref"].startswith(f"{channel}/messages/"), key
    for key, message in document["components"]["messages"].items():
        payload = resolve(document, message["payload"]["$ref"])
        Draft7Validator.check_schema(payload)
        assert payload.get("type") != "null", f"{key} has no body schema"
        for example in message.get("examples", []):
            payload_validator(document, message).validate(example["payload"])


# The broker: what the worker consumes and what `Commands` publishes.


def consumed(document: dict[str, Any]) -> dict[str, str]:
    """Queue name → body schema name, for each subscriber channel."""
    found = {}
    for operation in document["operations"].values():
        if operation["action"] == "receive":
            channel = resolve(document, operation["channel"]["$ref"])
            message = resolve(document, operation["messages"][0]["$ref"])
            queue = channel["bindings"]["amqp"]["queue"]["name"]
            found[queue] = resolve(document, message["payload"]["$ref"])["title"]
    return found


def published(document: dict[str, Any]) -> dict[tuple[str, str | None], str]:
    """(exchange, routing key or None for a fanout) → body schema name, per publisher."""
    found = {}
    for operation in document["operations"].values():
        if operation["action"] == "send":
            channel = resolve(document, operation["channel"]["$ref"])
            message = resolve(document, operation["messages"][0]["$ref"])
            exchange = channel["bindings"]["amqp"]["exchange"].get("name", "")
            key = (exchange, channel.get("address"))
            found[key] = resolve(document, message["payload"]["$ref"])["title"]
    return found


def test_the_broker_document_shows_the_queues_the_worker_consumes() -> None:
    topology = Topology()
    assert consumed(rendered("asyncapi-broker.json")) == {
        topology.tasks_queue: "RunTask",
        topology.high_tasks_queue: "RunTask",
        topology.dead_queue: "RunTask",
        f"{topology.control_exchange}.WORKER_NAME": "CancelTask",
    }


class RecordingBroker:
    """Stands in for the broker client: records what would be published, and where."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, BaseModel]] = []

    async def publish(
        self,
        message: BaseModel,
        queue: RabbitQueue | str = "",
        exchange: RabbitExchange | str | None = None,
        *,
        routing_key: str = "",
        **kwargs: Any,
    ) -> None:
        exchange_name = exchange.name if isinstance(exchange, RabbitExchange) else exchange or ""
        queue_name = queue.name if isinstance(queue, RabbitQueue) else queue
        # A publish to a queue goes through the default exchange, routed by the queue's name.
        self.published.append((exchange_name, queue_name or routing_key, message))


async def test_every_publish_of_the_commands_is_a_channel_of_the_broker_document() -> None:
    recorder = RecordingBroker()
    settings = default_settings()
    commands = Commands(
        cast(RabbitBroker, recorder),
        cast(TaskStore, MagicMock()),
        Topology(settings.namespace),
        timeout_s=settings.publish_timeout_s,
    )
    await commands.run("t1", "test.noop")
    await commands.run("t2", "test.noop", delay_s=3)
    await commands.cancel("t3")  # the publish a cancel of a running task makes
    assert len(recorder.published) == 3

    channels = published(rendered("asyncapi-broker.json"))
    for exchange, routing_key, body in recorder.published:
        kind = type(body).__name__
        # A fanout ignores the routing key: its channel has no address.
        assert channels.get((exchange, routing_key), channels.get((exchange, None))) == kind, (
            f"{kind} published to exchange {exchange!r} with key {routing_key!r} is not in "
            "docs/contracts/asyncapi-broker.json: declare it in services/contracts/broker.py"
        )


# The WebSocket protocol.


def test_every_client_message_the_notifier_parses_is_received_in_the_document() -> None:
    received = messages_of(rendered("asyncapi-websocket.json"), "receive")
    parsed = {protocol.message_type(model) for model in typing.get_args(protocol.Incoming)}
    assert parsed == set(received)


def test_the_parser_is_the_documented_schema() -> None:
    # The document's client message schemas are the very models `parse` validates with.
    document = rendered("asyncapi-websocket.json")
    received = messages_of(document, "receive")
    for model in protocol.CLIENT_MESSAGES:
        ref = received[protocol.message_type(model)]["payload"]["$ref"]
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        assert resolve(document, ref) == {k: v for k, v in schema.items() if k != "$defs"}


def test_every_message_the_notifier_encodes_is_sent_in_the_document_with_an_example() -> None:
    sent = messages_of(rendered("asyncapi-websocket.json"), "send")
    encoders = {
        name.removesuffix("_message")
        for name, _ in inspect.getmembers(outbound, inspect.isfunction)
        if name.endswith("_message")
    }
    assert encoders == set(sent)
    assert set(server_examples()) == encoders


def test_what_the_notifier_encodes_matches_the_documented_schema() -> None:
    document = rendered("asyncapi-websocket.json")
    sent = messages_of(document, "send")
    frames = [frame for examples in server_examples().values() for frame in examples]
    frames += [outbound.error_message(kind, "why", "s1") for kind in protocol.PROBLEM_TYPES]
    frames += [outbound.error_for(protocol.ProtocolError("invalid-message", "why"))]
    frames += [outbound.authenticated_message("root", "admin")]
    for frame in frames:
        message = json.loads(frame)
        payload_validator(document, sent[message["type"]]).validate(message)


def test_a_wrong_server_frame_fails_the_documented_schema() -> None:
    # The check above would pass anything if the schemas allowed anything.
    document = rendered("asyncapi-websocket.json")
    sent = messages_of(document, "send")
    wrong: list[dict[str, Any]] = [
        {"type": "task", "sub": "s1", "task": {"id": "t"}},
        {"type": "authenticated", "user": "alice", "role": "root"},
        {"type": "error", "problem": {"type": "urn:nope", "title": "", "status": 1, "detail": ""}},
        {"type": "deleted", "sub": "s1"},
    ]
    for message in wrong:
        assert not payload_validator(document, sent[message["type"]]).is_valid(message), message


#: Client frames the documented schemas allow: the notifier must accept each.
ALLOWED = [
    {"type": "subscribe", "id": "s1", "tasks": ["a", "b"]},
    {"type": "subscribe", "id": "s1", "tasks": ["a"], "since": {"a": 3}},
    {"type": "subscribe", "id": "s1", "scope": "all"},
    {"type": "subscribe", "id": "s1", "scope": "all", "since_ts": "2026-01-02T03:04:05Z"},
    {"type": "subscribe", "id": "x" * 64, "scope": "all", "since": None, "extra": 1},
    {"type": "unsubscribe", "id": "s1"},
    {"type": "ping"},
    {"type": "ping", "id": "p1"},
    {"type": "ping", "id": None},
    {"type": "auth", "ticket": "t"},
    {"type": "auth", "token": "tl_x"},
]
#: Client frames the documented schemas refuse: the notifier must refuse each too.
REFUSED = [
    {"type": "subscribe", "id": "s1"},
    {"type": "subscribe", "id": "s1", "tasks": ["a"], "scope": "all"},
    {"type": "subscribe", "id": "s1", "tasks": []},
    {"type": "subscribe", "id": "s1", "tasks": ["a"] * 1001},
    {"type": "subscribe", "id": "s1", "tasks": [1]},
    {"type": "subscribe", "id": "s1", "tasks": None},
    {"type": "subscribe", "id": "s1", "tasks": None, "scope": "all"},
    {"type": "subscribe", "id": "s1", "scope": "all", "since_ts": None},
    {"type": "subscribe", "id": "s1", "scope": "all", "since_ts": 1767322800},
    {"type": "subscribe", "id": "s1", "scope": "mine"},
    {"type": "subscribe", "id": "s1", "tasks": ["a"], "since_ts": "2026-01-02T03:04:05Z"},
    {"type": "subscribe", "id": "s1", "tasks": ["a"], "since": {"a": True}},
    {"type": "subscribe", "id": "s1", "tasks": ["a"], "since": {"a": "3"}},
    {"type": "subscribe", "id": "", "scope": "all"},
    {"type": "subscribe", "id": "x" * 65, "scope": "all"},
    {"type": "subscribe", "tasks": ["a"]},
    {"type": "unsubscribe"},
    {"type": "ping", "id": 7},
    {"type": "auth"},
    {"type": "auth", "ticket": None},
    {"type": "auth", "ticket": None, "token": "tl_x"},
    {"type": "auth", "ticket": "t", "token": "u"},
    {"type": "auth", "token": ""},
    {"type": "auth", "token": "x" * 513},
    {"type": "hello"},
    {"id": "s1"},
]


def documented(frame: dict[str, Any]) -> bool:
    """Whether a client frame is one of the messages the document says the notifier receives."""
    document = rendered("asyncapi-websocket.json")
    received = messages_of(document, "receive")
    message = received.get(str(frame.get("type")))
    return message is not None and payload_validator(document, message).is_valid(frame)


def accepted(frame: dict[str, Any]) -> bool:
    """Whether the notifier's parser serves a client frame."""
    try:
        protocol.parse(json.dumps(frame))
    except protocol.ProtocolError:
        return False
    return True


@pytest.mark.parametrize("frame", ALLOWED, ids=lambda f: json.dumps(f)[:60])
def test_a_documented_client_message_is_accepted_by_the_notifier(frame: dict[str, Any]) -> None:
    assert documented(frame)
    assert accepted(frame)


@pytest.mark.parametrize("frame", REFUSED, ids=lambda f: json.dumps(f)[:60])
def test_an_undocumented_client_message_is_refused_by_the_notifier(frame: dict[str, Any]) -> None:
    assert not documented(frame)
    assert not accepted(frame)


def test_the_websocket_document_lists_every_close_code() -> None:
    channel = rendered("asyncapi-websocket.json")["channels"]["socket"]
    codes = {entry["code"] for entry in channel["x-close-codes"]}
    assert set(CLOSE_RULES) == set(CloseCode)
    assert codes == {code.value for code in CloseCode}
    assert {1000, 1001, 1009, 1011, 4000, 4001, 4401, 4403, 4429} <= codes


def test_the_protocol_page_lists_every_resume_constant_with_its_value() -> None:
    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = page.split("## Resume", 1)[1]
    listed = dict(re.findall(r"^\| `(\w+)` \| ([\d.]+)", table, re.MULTILINE))
    assert {name: float(value) for name, value in listed.items()} == {
        constant.name: float(constant.value) for constant in RESUME
    }
    codes = ", ".join(str(code.value) for code in no_reconnect())
    assert f"({codes}: `NO_RECONNECT`)" in table


def test_the_protocol_page_lists_every_close_code() -> None:
    page = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = page.split("## Close codes", 1)[1].split("\n## ", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| (\d{4}) ", table, re.MULTILINE)}
    assert listed == {code.value for code in CloseCode}
