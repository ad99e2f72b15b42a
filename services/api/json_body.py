"""An ASGI middleware that lets only JSON request bodies in, and only JSON the rule of
`shared.jsonlimits` accepts: before any route reads them, so that no request can store what the
database (or a later read) would choke on.

A body must be sent as `application/json` (or `application/<something>+json`), in UTF-8; it is
refused with 415 otherwise, 400 `malformed-json` when it is not strict JSON (NaN, Infinity and
numbers beyond a double's range included), 400 `too-deep` when it nests deeper than
`MAX_DOCUMENT_DEPTH`.
"""

from __future__ import annotations

from email.message import Message as MimeHeader

from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.body_limit import replaying
from services.api.problems import problem_response
from shared.jsonlimits import MAX_DOCUMENT_DEPTH, JsonRefused, loads

#: Methods whose bodies are ignored (and so not checked).
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_json_media_type(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON in UTF-8 (the only charset JSON has, RFC 8259)."""
    if not content_type:
        return False
    header = MimeHeader()
    header["content-type"] = content_type
    if header.get_content_maintype() != "application":
        return False
    subtype = header.get_content_subtype()
    if subtype != "json" and not subtype.endswith("+json"):
        return False
    charset = header.get_param("charset")
    return charset is None or str(charset).lower() in ("utf-8", "utf8")


class JsonBodyMiddleware:
    """Refuse a request body that is not JSON by the one rule; pass the rest on unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body:
            refusal = self._refusal(scope, body)
            if refusal is not None:
                type_, detail = refusal
                await problem_response(type_, detail, instance=scope.get("path"))(
                    scope, receive, send
                )
                return
        await self.app(scope, replaying(body, receive), send)

    @staticmethod
    def _refusal(scope: Scope, body: bytes) -> tuple[str, str] | None:
        content_types = [v for k, v in scope.get("headers", []) if k == b"content-type"]
        content_type = content_types[0].decode("latin-1") if len(content_types) == 1 else None
        if not is_json_media_type(content_type):
            sent = ", ".join(c.decode("latin-1") for c in content_types) or "none"
            return (
                "urn:tasklight:problem:unsupported-media-type",
                "send the body as JSON with content-type: application/json (or another "
                f"application/…+json type; it came as {sent})",
            )
        try:
            loads(body, max_depth=MAX_DOCUMENT_DEPTH)
        except JsonRefused as exc:
            if exc.too_deep:
                return "urn:tasklight:problem:too-deep", str(exc)
            return "urn:tasklight:problem:malformed-json", str(exc)
        return None
