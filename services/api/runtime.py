"""What every request handler of the API needs, built once at start-up, and its dependencies."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from faststream.rabbit import RabbitBroker

from services.api.problems import ProblemError
from shared.auth import CSRF_COOKIE, SESSION_COOKIE, AuthStore, Principal, Session, bearer_token
from shared.registry import Registry
from shared.runs import Runs
from shared.settings import Settings
from shared.store import Store
from shared.submission import Submissions

CSRF_HEADER = "X-CSRF-Token"
#: Methods that change nothing, and so need no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Runtime:
    """The API's connected parts."""

    settings: Settings
    store: Store
    broker: RabbitBroker
    submissions: Submissions
    runs: Runs
    registry: Registry
    auth: AuthStore


def runtime_of(request: Request) -> Runtime:
    """The runtime the app's lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    """`runtime_of` as a dependency: async, because FastAPI runs a plain function dependency
    in its thread pool: a thread hop on every request."""
    return runtime_of(request)


@dataclass(frozen=True)
class Credentials:
    """How a request authenticated: the principal, and its session when it came by cookie."""

    principal: Principal
    session: Session | None = None


async def authenticate(request: Request) -> Credentials | None:
    """The request's credentials: a bearer token, else the session cookie; None if it has none.

    Wrong credentials are an error, not anonymity: a client that sent a token learns at once
    that it is not accepted.
    """
    runtime = runtime_of(request)
    header = request.headers.get("Authorization")
    if header is not None:
        token = bearer_token(header)
        if token is None:
            raise _unauthorized("the Authorization header must be `Bearer <token>`")
        principal = await runtime.auth.by_token(token)
        if principal is None:
            raise _unauthorized("the API token is not valid (revoked, or never issued)")
        return Credentials(principal)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        session = await runtime.auth.by_session(secret)
        if session is not None:
            return Credentials(session.principal, session)
    return None


async def get_credentials(request: Request) -> Credentials:
    """The request's credentials; 401 without, 403 for a cookie write without its CSRF token."""
    credentials = await authenticate(request)
    if credentials is None:
        raise _unauthorized("sign in, or send an API token as `Authorization: Bearer <token>`")
    session = credentials.session
    if session is not None and request.method not in SAFE_METHODS:
        # The cookie is sent by the browser whoever's page asks; the token only our pages have.
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, session.csrf_token):
            raise ProblemError(
                "urn:tasklight:problem:csrf",
                f"a write signed in by cookie must send the {CSRF_HEADER} header "
                f"(the value of the {CSRF_COOKIE} cookie)",
            )
    return credentials


async def get_principal(credentials: Annotated[Credentials, Depends(get_credentials)]) -> Principal:
    """The user the request acts as."""
    return credentials.principal


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        "urn:tasklight:problem:unauthorized",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="tasklight"'},
    )


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
CredentialsDep = Annotated[Credentials, Depends(get_credentials)]
UserDep = Annotated[Principal, Depends(get_principal)]
