"""One HTTP POST to a checked destination: connected to the checked address (no second lookup),
no redirects followed, bounded in time and in what is read back."""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpcore

from shared.webhooks.destinations import Destination

#: Bytes of a receiver's answer read (and kept as the attempt's note); the rest is dropped.
MAX_ANSWER_BYTES = 1024
USER_AGENT = "tasklight-webhooks/1"


class AttemptFailed(Exception):
    """No HTTP answer: the message says what went wrong."""


@dataclass(frozen=True)
class Answer:
    """What the receiver answered."""

    status: int
    latency_ms: float
    excerpt: str


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects every request to one address, whatever host its URL names (which still goes in
    the `Host` header and, over TLS, in SNI and the certificate check)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self.inner.connect_tcp(
            self.address, port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """The system's CA certificates, loaded once: loading them takes longer than most
    deliveries."""
    return ssl.create_default_context()


def _host_header(destination: Destination) -> str:
    target = destination.target
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


async def post(
    destination: Destination,
    url: str,
    headers: dict[str, str],
    body: str,
    *,
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """POST `body` as JSON to `url` at `destination.address`; raises `AttemptFailed` when there
    is no answer within `timeout_s` (connecting, sending and the answer's head together)."""
    content = body.encode()
    request_headers = [
        ("Host", _host_header(destination)),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(content))),
        ("User-Agent", USER_AGENT),
        ("Connection", "close"),
        *headers.items(),
    ]
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    started = time.monotonic()
    try:
        async with (
            asyncio.timeout(timeout_s),
            httpcore.AsyncConnectionPool(
                ssl_context=ssl_context or default_ssl_context(),
                max_connections=1,
                retries=0,
                network_backend=_PinnedBackend(destination.address),
            ) as pool,
            pool.stream(
                "POST",
                url,
                headers=request_headers,
                content=content,
                extensions={"timeout": timeouts},
            ) as response,
        ):
            latency_ms = (time.monotonic() - started) * 1000
            excerpt = b""
            async for chunk in response.aiter_stream():
                excerpt += chunk
                if len(excerpt) >= MAX_ANSWER_BYTES:
                    break
    except TimeoutError:
        raise AttemptFailed(f"no answer within {timeout_s:g} s") from None
    except httpcore.TimeoutException:
        raise AttemptFailed(f"no answer within {timeout_s:g} s") from None
    except (httpcore.ConnectError, OSError) as exc:
        raise AttemptFailed(f"could not connect to {destination.address}: {exc}") from None
    except httpcore.ProtocolError as exc:
        raise AttemptFailed(f"not a valid HTTP answer: {exc}") from None
    except httpcore.NetworkError as exc:
        raise AttemptFailed(f"the connection failed: {exc}") from None
    return Answer(
        response.status, latency_ms, excerpt[:MAX_ANSWER_BYTES].decode("utf-8", "replace")
    )
