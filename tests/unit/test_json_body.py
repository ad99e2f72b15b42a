"""Request bodies reach the app only as JSON by the one rule; anything else gets its problem."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from services.api.json_body import JsonBodyMiddleware, is_json_media_type
from shared.jsonlimits import MAX_DOCUMENT_DEPTH

JSON = {"content-type": "application/json"}


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=JsonBodyMiddleware(echo))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_a_json_body_reaches_the_app_unchanged() -> None:
    async with client() as http:
        response = await http.post("/", content=b'{"a": [1, 2]}', headers=JSON)
    assert (response.status_code, response.content) == (200, b'{"a": [1, 2]}')


async def test_no_body_and_safe_methods_pass_whatever_their_content_type() -> None:
    async with client() as http:
        assert (await http.post("/")).status_code == 200
        assert (await http.get("/", headers={"content-type": "text/plain"})).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"content-type": "text/plain"}, {"content-type": "application/json; charset=latin-1"}],
)
async def test_a_body_not_sent_as_json_gets_415_saying_so(headers: dict[str, str]) -> None:
    async with client() as http:
        response = await http.post("/", content=b'{"a": 1}', headers=headers)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "urn:tasklight:problem:unsupported-media-type"
    assert "application/json" in problem["detail"]


@pytest.mark.parametrize(
    ("body", "type_"),
    [
        (b'{"a": NaN}', "malformed-json"),
        (b'{"a": Infinity}', "malformed-json"),
        (b'{"a": 1e400}', "malformed-json"),
        (b'{"a": "\xc3("}', "malformed-json"),
        (b'{"a": "\\ud800"}', "malformed-json"),
        (b"{", "malformed-json"),
        ('{"a":' * (MAX_DOCUMENT_DEPTH + 1) + "1" + "}" * (MAX_DOCUMENT_DEPTH + 1), "too-deep"),
        ("[" * 50_000 + "]" * 50_000, "too-deep"),
    ],
)
async def test_a_body_the_rule_refuses_gets_its_documented_problem(
    body: bytes | str, type_: str
) -> None:
    async with client() as http:
        response = await http.post("/", content=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["type"] == f"urn:tasklight:problem:{type_}"


def test_json_media_types() -> None:
    assert is_json_media_type("application/json")
    assert is_json_media_type("Application/JSON; charset=UTF-8")
    assert is_json_media_type("application/merge-patch+json")
    for other in (None, "", "text/json", "application/jsonp", "application/json; charset=utf-16"):
        assert not is_json_media_type(other)
