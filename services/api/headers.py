"""The api's security headers, on every answer, and the request headers it refuses outright.

Every answer says `X-Content-Type-Options: nosniff`, `Referrer-Policy: same-origin`,
`X-Frame-Options: DENY` and a Content-Security-Policy: the UI's pages set their own (scripts and
styles from this origin only, WebSocket to the notifier, never framed: `frame-ancestors 'none'`);
the static files `STATIC_CSP` (never framed); everything else gets `API_CSP`, which allows
nothing at all, since JSON is not a page. The interactive docs (`/docs`, `/redoc`) load their
scripts from this origin (`/docs-assets/`, services/api/api_docs.py) and run an inline one:
they get `DOCS_CSP`.

A request with its `Origin` or `Host` header twice is refused with 400 `invalid-header`: which
of the two a proxy, a browser and this app would each believe is anybody's guess.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.problems import problem_response

#: For answers that are not pages: nothing may load, nothing may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
#: The Swagger UI and ReDoc pages: their bundles come from this origin, each page starts them
#: with an inline script, and nothing is fetched from anywhere else.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "font-src 'self'; img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
#: For the UI's own static files (scripts, styles, the icon): never framed, nothing embedded;
#: what they load is theirs to decide (a script's answer is not a document, an SVG's is ours).
STATIC_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
#: Headers that must come at most once.
SINGLE_HEADERS = (b"origin", b"host")

_ALWAYS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


def page_csp(notifier_url: str) -> str:
    """The Content-Security-Policy of a UI page whose scripts connect to `notifier_url`."""
    # 'self' covers ws:// and wss:// of the page's own host and port only (CSP Level 3);
    # the notifier on another port or host is named.
    connect = "'self'" if notifier_url.startswith("/") else f"'self' {notifier_url}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'; object-src 'none'"
    )


class SecurityHeadersMiddleware:
    """Add the security headers to every answer; refuse repeated `Origin` or `Host`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in DOCS_PATHS:
            csp = DOCS_CSP
        elif path.startswith(("/static/", "/docs-assets/")):
            csp = STATIC_CSP
        else:
            csp = API_CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(k, v) for k, v in _ALWAYS if k not in present]
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp.encode()))
                message["headers"] = headers
            await send(message)

        names = [name for name, _ in scope.get("headers", [])]
        repeated = [n.decode() for n in SINGLE_HEADERS if names.count(n) > 1]
        if repeated:
            response = problem_response(
                "urn:tasklight:problem:invalid-header",
                f"the {' and '.join(repeated)} header must be sent once",
                instance=scope.get("path"),
            )
            await response(scope, receive, with_headers)
            return
        await self.app(scope, receive, with_headers)
