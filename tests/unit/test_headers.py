"""Security headers on every answer, and repeated Origin or Host refused."""

from __future__ import annotations

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from services.api.headers import (
    API_CSP,
    DOCS_CSP,
    STATIC_CSP,
    SecurityHeadersMiddleware,
    page_csp,
)


async def plain(scope: Scope, receive: Receive, send: Send) -> None:
    headers = []
    if scope["path"] == "/page":
        headers.append((b"content-security-policy", page_csp("ws://127.0.0.1:8001/ws").encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=SecurityHeadersMiddleware(plain))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


@pytest.mark.parametrize(
    ("path", "csp"),
    [
        ("/api/v1/tasks", API_CSP),
        ("/docs", DOCS_CSP),
        ("/static/tasklight.js", STATIC_CSP),
        ("/page", page_csp("ws://127.0.0.1:8001/ws")),
    ],
)
async def test_every_answer_carries_the_headers_and_one_policy(path: str, csp: str) -> None:
    async with client() as http:
        response = await http.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers.get_list("content-security-policy") == [csp]
    assert "frame-ancestors 'none'" in csp


def test_a_page_may_connect_to_its_notifier_and_load_nothing_from_elsewhere() -> None:
    csp = page_csp("ws://127.0.0.1:8001/ws")
    assert "connect-src 'self' ws://127.0.0.1:8001/ws;" in csp
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "connect-src 'self';" in page_csp("/ws")


@pytest.mark.parametrize("header", ["origin", "host"])
async def test_a_repeated_origin_or_host_gets_400(header: str) -> None:
    async with client() as http:
        response = await http.get("/", headers=[(header, "http://a.example"), (header, "http://b")])
    assert response.status_code == 400
    assert response.json()["type"] == "urn:tasklight:problem:invalid-header"
    assert response.headers["x-content-type-options"] == "nosniff"
