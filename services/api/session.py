"""Signing in and out of the web UI, and tickets for WebSocket connections.

A browser signs in with a user name and password and gets two cookies: the session's secret
(`HttpOnly`, so no script can read it) and its CSRF token (readable, so the UI's scripts can send
it back in `X-CSRF-Token` on every write: a page of another site can make the browser send the
cookie, but cannot read the token).
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from services.api.problems import ProblemError, problem_responses
from services.api.runtime import (
    CredentialsDep,
    RuntimeDep,
    UserDep,
)
from shared.auth import CSRF_COOKIE, SESSION_COOKIE, Principal, Role, TooManyFailedLogins
from shared.offload import Busy
from shared.task import API_PREFIX

router = APIRouter(prefix=API_PREFIX, tags=["session"])


class SignIn(BaseModel):
    """A user name and password."""

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserInfo(BaseModel):
    """Who a request acts as."""

    name: str
    role: Role


class SessionInfo(BaseModel):
    """The signed-in user; `csrf_token` is what cookie-authenticated writes must send."""

    user: UserInfo
    csrf_token: str | None = None
    expires_at: datetime | None = None


class Ticket(BaseModel):
    """A single-use credential for one WebSocket connection (send it in an `auth` message)."""

    ticket: str
    expires_at: datetime


def _user(principal: Principal) -> UserInfo:
    return UserInfo(name=principal.name, role=principal.role)


@router.post(
    "/session",
    response_model=SessionInfo,
    responses=problem_responses(400, 401, 415, 422, 429, 503),
    summary="Sign in",
)
async def sign_in(
    body: SignIn, request: Request, response: Response, runtime: RuntimeDep
) -> SessionInfo:
    """Check a user name and password and start a session (the cookies)."""
    # The peer's address: a proxy's X-Forwarded-For only counts from TASKLIGHT_TRUSTED_PROXIES.
    address = request.client.host if request.client else None
    try:
        principal = await runtime.auth.by_password(body.username, body.password, address=address)
    except TooManyFailedLogins as exc:
        raise ProblemError(
            "urn:tasklight:problem:too-many-failed-sign-ins",
            str(exc),
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except Busy:
        raise ProblemError(
            "urn:tasklight:problem:sign-in-busy",
            "too many sign-ins are being checked at once; retry in a second",
            headers={"Retry-After": "1"},
        ) from None
    if principal is None:
        raise ProblemError("urn:tasklight:problem:bad-credentials", "wrong user name or password")
    secret, session = await runtime.auth.open_session(principal)
    secure = runtime.settings.cookie_secure or request.url.scheme == "https"
    max_age = runtime.settings.session_ttl_s
    # Lax, not Strict: a link from the host application to a waiting page must arrive signed in.
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=max_age, httponly=True, samesite="lax", secure=secure
    )
    response.set_cookie(
        CSRF_COOKIE, session.csrf_token, max_age=max_age, samesite="strict", secure=secure
    )
    return SessionInfo(
        user=_user(principal), csrf_token=session.csrf_token, expires_at=session.expires_at
    )


@router.get(
    "/session", response_model=SessionInfo, responses=problem_responses(401), summary="Who am I"
)
async def who_am_i(credentials: CredentialsDep) -> SessionInfo:
    """The user the request acts as (by cookie or token)."""
    session = credentials.session
    return SessionInfo(
        user=_user(credentials.principal),
        csrf_token=session.csrf_token if session else None,
        expires_at=session.expires_at if session else None,
    )


@router.delete(
    "/session", status_code=204, responses=problem_responses(401, 403), summary="Sign out"
)
async def sign_out(request: Request, runtime: RuntimeDep, credentials: CredentialsDep) -> Response:
    """End the session: its cookie opens nothing any more."""
    secret = request.cookies.get(SESSION_COOKIE)
    if credentials.session is not None and secret:
        await runtime.auth.close_session(secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.post(
    "/ws-tickets",
    status_code=201,
    response_model=Ticket,
    responses=problem_responses(401, 403),
    summary="A WebSocket ticket",
)
async def ws_ticket(runtime: RuntimeDep, user: UserDep) -> Ticket:
    """A single-use ticket that authenticates one WebSocket connection, for a notifier that
    the session cookie does not reach (another site). It expires after `ws_ticket_ttl_s`."""
    ticket, expires_at = await runtime.auth.issue_ticket(user)
    return Ticket(ticket=ticket, expires_at=expires_at)
