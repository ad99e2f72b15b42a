"""Bodies over the limit are refused with 413 problem details before the app reads them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from services.api.body_limit import BodyLimitMiddleware


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def client() -> httpx.AsyncClient:
    app = BodyLimitMiddleware(echo_length, max_bytes=10)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_a_body_at_the_limit_reaches_the_app_whole() -> None:
    async with client() as http:
        response = await http.post("/", content=b"x" * 10)
    assert (response.status_code, response.text) == (200, "10")


async def test_a_declared_body_over_the_limit_gets_413_problem_details() -> None:
    async with client() as http:
        response = await http.post("/", content=b"x" * 11)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:tasklight:problem:body-too-large"


async def test_a_streamed_body_without_length_over_the_limit_gets_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"xxxx"

    async with client() as http:
        response = await http.post("/", content=chunks())
    assert response.status_code == 413
