"""A small HTTP server for operators: /healthz, /readyz and /metrics, for probes and scrapes.

A worker otherwise serves nothing; the api serves its users on another port, and its metrics
are not theirs to read. So this is plain asyncio (no web framework): one GET per connection,
answered and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from prometheus_client import CollectorRegistry

from shared import metrics

log = logging.getLogger(__name__)

#: Seconds a readiness check waits for each backing service.
READY_TIMEOUT_S = 2.0
#: Seconds a client has to send its request line and headers.
REQUEST_TIMEOUT_S = 5.0
#: Largest request head read (a probe's is a few hundred bytes).
MAX_HEAD_BYTES = 16 * 1024

#: A check of one backing service: raises, or returns False, when it does not answer.
Check = Callable[[], Awaitable[object]]


class ProbeServer:
    """Answers GET /healthz (the process runs), /readyz (every check passes; else 503) and
    /metrics (the Prometheus metrics of `registry`: the worker's unless told otherwise)."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: dict[str, Check],
        *,
        registry: CollectorRegistry = metrics.WORKER_REGISTRY,
        service: str = "worker",
    ) -> None:
        self.host = host
        self.port = port
        self.checks = checks
        self.registry = registry
        self.service = service
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; with port 0 on a free port, which `port` then holds (and the log says)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("%s probes and metrics on http://%s:%d/", self.service, self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > MAX_HEAD_BYTES:
                raise ValueError("request head too large")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, content_type, body = await self._answer(method, target.split("?", 1)[0])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        except ValueError:
            status, content_type, body = HTTPStatus.BAD_REQUEST, "text/plain", b"bad request\n"
        head_out = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head_out.encode("latin-1") + (b"" if method == "HEAD" else body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str) -> tuple[HTTPStatus, str, bytes]:
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, "text/plain", b"only GET\n"
        if path == "/healthz":
            return HTTPStatus.OK, "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            results = {name: await _run(check) for name, check in self.checks.items()}
            ready = all(result == "ok" for result in results.values())
            body = {"status": "ready" if ready else "not ready", "checks": results}
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            return status, "application/json", json.dumps(body).encode()
        if path == "/metrics":
            return HTTPStatus.OK, metrics.CONTENT_TYPE, metrics.exposition(self.registry)
        return HTTPStatus.NOT_FOUND, "text/plain", b"not found: /healthz, /readyz, /metrics\n"


async def _run(check: Check) -> str:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            answered = await check()
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok" if answered is not False else "unavailable"
