"""The api's and the notifier's edges on the real database and broker: what a request may
hold, the headers every answer carries, what is not built from the Host header, and who gets
the metrics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.notifier.app import Notifier
from services.worker.app import Worker
from shared.jsonlimits import MAX_DEPTH
from shared.settings import Settings
from shared.store import Store
from tests.support import eventually
from tests.support.wsclient import ws_connect

pytestmark = pytest.mark.integration

JSON = {"content-type": "application/json"}


def nested(levels: int) -> str:
    """JSON text of objects nesting `levels` deep."""
    return '{"a":' * levels + "1" + "}" * levels


def with_metadata(metadata: str) -> bytes:
    return ('{"name": "test.count", "args": {"rounds": 1}, "metadata": ' + metadata + "}").encode()


async def stored(store: Store) -> int:
    return await store.tasks.collection.count_documents({})


async def post(api: httpx.AsyncClient, path: str, body: bytes) -> httpx.Response:
    return await api.post(path, content=body, headers=JSON)


# --- one request never makes a poison task ------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 120, 300, 1000])
async def test_a_submission_nested_too_deep_is_refused_before_anything_is_stored(
    api: httpx.AsyncClient, store: Store, levels: int
) -> None:
    single = await post(api, "/api/v1/tasks", with_metadata(nested(levels)))
    batch_body = b'{"tasks": [' + with_metadata(nested(levels)) + b"]}"
    batch = await post(api, "/api/v1/tasks:batch", batch_body)
    for response in (single, batch):
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "urn:tasklight:problem:too-deep"
    assert await stored(store) == 0


async def test_free_json_at_the_depth_limit_with_odd_but_storable_keys_is_run_to_the_end(
    api: httpx.AsyncClient, worker: Worker
) -> None:
    """What the rule lets in the database can store, and a worker can claim and end."""
    metadata = '{"deep": ' + nested(MAX_DEPTH - 1) + ', "$set": 1, "a.b": "x\\u0000y"}'
    response = await post(api, "/api/v1/tasks", with_metadata(metadata))
    assert response.status_code == 202, response.text
    task_id = response.json()["id"]

    async def read() -> dict[str, Any]:
        body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
        return body

    task = await eventually(read, lambda t: t["state"] == "completed")
    assert task["metadata"]["a.b"] == "x\x00y"


@pytest.mark.parametrize(
    "body",
    [
        with_metadata('{"x": "\\ud800"}'),
        with_metadata('{"\\udfff": 1}'),
        b'{"name": "test.count", "args": {"rounds": 1}, "ui": {"header": "\\ud800"}}',
        b'{"name": "test.count\\ud800"}',
    ],
    ids=["value", "key", "ui", "name"],
)
async def test_text_the_database_cannot_hold_is_refused_with_400_and_nothing_stored(
    api: httpx.AsyncClient, store: Store, body: bytes
) -> None:
    response = await post(api, "/api/v1/tasks", body)
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "urn:tasklight:problem:malformed-json"
    assert "surrogate" in response.json()["detail"]
    assert await stored(store) == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
async def test_nan_and_infinity_are_not_json(
    api: httpx.AsyncClient, store: Store, number: str
) -> None:
    for body in (
        b'{"name": "test.count", "args": {"rounds": 1, "round_s": ' + number.encode() + b"}}",
        with_metadata('{"x": ' + number + "}"),
    ):
        response = await post(api, "/api/v1/tasks", body)
        assert response.status_code == 400, response.text
        problem = response.json()
        assert problem["type"] == "urn:tasklight:problem:malformed-json"
        assert f"{number} is not JSON" in problem["detail"]
    assert await stored(store) == 0


# --- REST rough edges ---------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"content-type": "text/plain"}])
async def test_a_body_without_a_json_content_type_gets_415(
    api: httpx.AsyncClient, store: Store, headers: dict[str, str]
) -> None:
    body = b'{"name": "test.count", "args": {"rounds": 1}}'
    for path in ("/api/v1/tasks", "/api/v1/session"):
        response = await api.post(path, content=body, headers=headers)
        assert response.status_code == 415, response.text
        problem = response.json()
        assert problem["type"] == "urn:tasklight:problem:unsupported-media-type"
        assert "content-type: application/json" in problem["detail"]
    assert await stored(store) == 0


async def test_a_body_that_is_not_utf8_is_malformed_json_not_a_generic_problem(
    api: httpx.AsyncClient,
) -> None:
    response = await post(api, "/api/v1/tasks", b'{"name": "test.\xff\xfe"}')
    assert response.status_code == 400
    assert response.json()["type"] == "urn:tasklight:problem:malformed-json"
    assert "UTF-8" in response.json()["detail"]


async def test_a_repeated_origin_header_gets_400_from_the_api(api: httpx.AsyncClient) -> None:
    origins = [("origin", "http://127.0.0.1"), ("origin", "http://evil.example")]
    for method, path in (("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks")):
        response = await api.request(method, path, headers=[*origins, *JSON.items()], content=b"{}")
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "urn:tasklight:problem:invalid-header"


async def test_a_repeated_origin_header_gets_400_from_the_notifier(
    settings: Settings, notifier: Notifier
) -> None:
    url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
    origin = f"http://127.0.0.1:{settings.api_port}"
    headers = [("Origin", origin), ("Origin", "http://evil.example")]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, origin=None):
            pass
    assert refused.value.response.status_code == 400
    # One Origin of the allowed ones still opens a socket.
    async with connect(url, additional_headers=[("Origin", origin)]):
        pass


async def test_a_frame_nested_too_deep_gets_an_error_and_the_socket_stays(
    settings: Settings, notifier: Notifier
) -> None:
    async with ws_connect(settings) as socket:
        for frame in ('{"type": "ping", "id": ' + nested(200) + "}", "[" * 5000 + "]" * 5000):
            await socket.ws.send(frame)
            message = await socket.recv()
            assert message["type"] == "error", message
            assert message["problem"]["type"] == "urn:tasklight:problem:malformed-message"
        await socket.send({"type": "ping", "id": "after"})
        assert await socket.recv() == {"type": "pong", "id": "after"}


# --- headers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "page"),
    [
        ("/api/v1/tasks", False),
        ("/api/v1/tasks/nope", False),
        ("/static/ui/shell.js", False),
        ("/no-such-page", False),
        ("/", True),
        ("/login", True),
    ],
)
async def test_every_page_and_api_answer_carries_the_security_headers(
    api: httpx.AsyncClient, path: str, page: bool
) -> None:
    if path == "/login":  # signed out: signed in, it redirects
        async with httpx.AsyncClient(base_url=api.base_url) as anonymous:
            response = await anonymous.get(path)
    else:
        response = await api.get(path, headers={"accept": "text/html"})
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    csp = response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    if page:
        assert response.headers["content-type"].startswith("text/html")
        assert "script-src 'self';" in csp
    elif path.startswith("/static/"):
        assert "object-src 'none'" in csp
    else:
        assert "default-src 'none'" in csp


async def test_an_unexpected_error_answers_500_with_the_security_headers(
    settings: Settings,
) -> None:
    from services.api.app import create_app
    from tests.support.servers import DEV_AUTH, ServerThread

    app = create_app(settings)

    async def broken() -> None:
        raise RuntimeError("a bug")

    # A bug's answer is made by Starlette's outermost error handler, outside every middleware
    # added the usual way.
    app.add_api_route("/api/v1/broken", broken)
    async with (
        ServerThread(app, settings.api_port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}", headers=DEV_AUTH
        ) as api,
    ):
        response = await api.get("/api/v1/broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:tasklight:problem:internal"
    assert "a bug" not in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/healthz", {}, 200),
        ("/nope", {}, 404),
        ("/metrics", {}, 404),
        ("/ws", {"origin": "http://evil.example"}, 403),
        ("/ws", {}, 426),  # a GET of /ws that asks no upgrade: refused by websockets itself
    ],
)
async def test_every_plain_http_answer_of_the_notifier_carries_the_security_headers(
    settings: Settings, notifier: Notifier, path: str, headers: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.notifier_port}") as http:
        response = await http.get(path, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_pages_connect_to_the_notifier_their_policy_names(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    page = await api.get("/")
    expected = f"ws://127.0.0.1:{settings.notifier_port}/ws"
    assert f'name="tasklight-notifier" content="{expected}"' in page.text
    assert f"connect-src 'self' {expected};" in page.headers["content-security-policy"]


async def test_urls_are_never_built_from_a_host_header_the_api_does_not_know(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    evil = {"host": "evil.example"}
    config = (await api.get("/api/v1/config", headers=evil)).json()
    assert "evil.example" not in config["notifier_url"]
    page = await api.get("/", headers=evil)
    assert "evil.example" not in page.text
    assert "evil.example" not in page.headers["content-security-policy"]
    # A trailing slash is not redirected (the redirect would be built from the Host).
    slashed = await api.get("/api/v1/tasks/", headers=evil)
    assert slashed.status_code == 404
    assert "location" not in slashed.headers


async def test_a_configured_public_url_is_what_pages_are_given(settings: Settings) -> None:
    from services.api.app import create_app
    from tests.support.servers import DEV_AUTH, ServerThread

    public = settings.model_copy(update={"public_url": "https://tasks.example.com"})
    async with (
        ServerThread(create_app(public), public.api_port),
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{public.api_port}", headers=DEV_AUTH) as api,
    ):
        config = (await api.get("/api/v1/config")).json()
    assert config["notifier_url"] == f"wss://tasks.example.com:{public.notifier_port}/ws"


# --- metrics are for operators ------------------------------------------------------------


async def test_metrics_are_served_on_the_metrics_port_and_not_where_users_reach(
    api: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await api.get("/metrics")).status_code == 404
    async with httpx.AsyncClient() as operator:
        scraped = await operator.get(f"http://127.0.0.1:{settings.api_metrics_port}/metrics")
    assert scraped.status_code == 200
    assert "tasklight_http_requests_total" in scraped.text


async def test_the_notifiers_metrics_are_on_its_metrics_port_and_not_where_ws_is(
    settings: Settings, notifier: Notifier
) -> None:
    async with httpx.AsyncClient() as http:
        where_users_reach = await http.get(f"http://127.0.0.1:{settings.notifier_port}/metrics")
        scraped = await http.get(f"http://127.0.0.1:{settings.notifier_metrics_port}/metrics")
    assert where_users_reach.status_code == 404
    assert "tasklight_ws_connections" not in where_users_reach.text
    assert scraped.status_code == 200
    assert "tasklight_ws_connections" in scraped.text


async def test_the_worker_name_in_a_task_tells_nothing_of_the_machine(
    api: httpx.AsyncClient, mongo_url: str, amqp_url: str, settings: Settings
) -> None:
    import os
    import socket

    default_named = settings.model_copy(update={"worker_name": Settings().worker_name})
    running = Worker(default_named)
    await running.start()
    try:
        response = await post(api, "/api/v1/tasks", b'{"name": "test.count", "args": {}}')
        task_id = response.json()["id"]

        async def read() -> dict[str, Any]:
            body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
            return body

        task = await eventually(read, lambda t: t["state"] == "completed")
    finally:
        await asyncio.wait_for(running.stop(), 60)
    shown = json.dumps(task)
    assert task["worker"]["name"] == default_named.worker_name
    assert str(os.getpid()) not in task["worker"]["name"]
    assert socket.gethostname() not in shown
