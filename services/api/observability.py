"""The API's observability: a correlation id, a span and metrics per request (served to
operators on the metrics port, `TASKLIGHT_API_METRICS_PORT`, never on the port users reach).

The correlation id comes from the request's `X-Correlation-ID` (or `X-Request-ID`) when it is a
sensible token, else a new one; it goes back in the answer's `X-Correlation-ID`, onto every line
logged while handling the request, and into the headers of every command the request publishes.
"""

from __future__ import annotations

import re
import time
import uuid

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics, tracing
from shared.logs import bound

#: The header a correlation id comes in and goes back in.
CORRELATION_HEADER = "X-Correlation-ID"
_INCOMING = (b"x-correlation-id", b"x-request-id")
#: What an incoming id may look like; anything else (too long, odd bytes) is replaced.
_VALID_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
#: Methods counted by name; any other (a client may send any token) as `OTHER`, so that labels
#: stay few whatever clients send. Unmatched paths count as the route `unmatched` likewise.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def correlation_id(headers: dict[bytes, bytes]) -> str:
    """The request's correlation id: the caller's, if it sent a sensible one, else a new one."""
    for name in _INCOMING:
        value = headers.get(name)
        if value is not None:
            text = value.decode("latin-1").strip()
            if _VALID_ID.fullmatch(text):
                return text
    return uuid.uuid4().hex


class ObservabilityMiddleware:
    """Per HTTP request: its correlation id (in the log context and the answer), its span while
    tracing, and its count and duration by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        cid = correlation_id(headers)
        method: str = scope["method"]
        status = 500
        started = time.perf_counter()

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (CORRELATION_HEADER.lower().encode(), cid.encode()),
                ]
            await send(message)

        trace_headers = (
            {k.decode("latin-1"): v.decode("latin-1") for k, v in headers.items()}
            if tracing.enabled()
            else {}
        )
        with (
            bound(correlation_id=cid),
            tracing.server_span(method, scope["path"], trace_headers) as span,
        ):
            try:
                await self.app(scope, receive, answer)
            finally:
                route = _route(scope)
                tracing.end_server_span(span, method, route, status)
                elapsed_s = time.perf_counter() - started
                counted = method if method in _METHODS else "OTHER"
                metrics.answered(counted, route or "unmatched", status, elapsed_s)


def _route(scope: Scope) -> str | None:
    """The template of the route that took the request (`/api/v1/tasks/{task_id}`), if any."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else None


def install(app: FastAPI) -> None:
    """Add the middleware (outermost, so it sees every answer)."""
    app.add_middleware(ObservabilityMiddleware)
