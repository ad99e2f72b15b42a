"""Errors as RFC 9457 problem details (`application/problem+json`), and the handlers that make them.

Each problem `type` is a stable URN that clients can switch on; the README lists them all.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.problem_details import ProblemDetails

PROBLEM_JSON = "application/problem+json"

#: problem type URN → (HTTP status, title); the one table of what can go wrong.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "urn:tasklight:problem:malformed-json": (400, "The request body is not valid JSON"),
    "urn:tasklight:problem:too-deep": (400, "The JSON nests too deeply"),
    "urn:tasklight:problem:invalid-header": (400, "A request header is malformed or repeated"),
    "urn:tasklight:problem:unsupported-media-type": (415, "The request body must be JSON"),
    "urn:tasklight:problem:invalid-request": (422, "The request does not validate"),
    "urn:tasklight:problem:invalid-task": (422, "Unknown task type or invalid arguments"),
    "urn:tasklight:problem:scheduled-too-far": (
        422,
        "The task is scheduled further ahead than the limit allows",
    ),
    "urn:tasklight:problem:unauthorized": (401, "Authentication required"),
    "urn:tasklight:problem:bad-credentials": (401, "Wrong user name or password"),
    "urn:tasklight:problem:csrf": (403, "Missing or wrong CSRF token"),
    "urn:tasklight:problem:not-found": (404, "Not found"),
    "urn:tasklight:problem:method-not-allowed": (405, "Method not allowed"),
    "urn:tasklight:problem:body-too-large": (413, "The request body is too large"),
    "urn:tasklight:problem:args-too-large": (413, "The task's arguments are too large"),
    "urn:tasklight:problem:rate-limited": (429, "Too many submissions; slow down"),
    "urn:tasklight:problem:too-many-failed-sign-ins": (429, "Too many wrong passwords lately"),
    "urn:tasklight:problem:sign-in-busy": (503, "Too many sign-ins at once; retry shortly"),
    "urn:tasklight:problem:already-finished": (409, "The task has already finished"),
    "urn:tasklight:problem:not-asking": (409, "The task is not waiting for this answer"),
    "urn:tasklight:problem:invalid-answer": (422, "The answer does not fit the question"),
    "urn:tasklight:problem:idempotency-key-reused": (
        422,
        "The Idempotency-Key was used before with another request body",
    ),
    "urn:tasklight:problem:idempotency-key-in-flight": (
        409,
        "A request with this Idempotency-Key is being processed",
    ),
    "urn:tasklight:problem:webhook-destination-refused": (
        422,
        "Webhooks may not be sent to that address",
    ),
    "urn:tasklight:problem:too-many-webhooks": (409, "The most webhook endpoints allowed"),
    "urn:tasklight:problem:delivery-in-flight": (409, "The delivery is being attempted now"),
    "urn:tasklight:problem:broker-unavailable": (503, "The task queue cannot take tasks now"),
    "urn:tasklight:problem:unavailable": (503, "A backing service is unavailable"),
    # Any other HTTP error the framework raises, with its own status (none is known to remain).
    "urn:tasklight:problem:http": (400, "Bad request"),
    "urn:tasklight:problem:internal": (500, "Internal error"),
}


class HttpProblem(ProblemDetails):
    """RFC 9457 problem details of an HTTP answer, with `errors` naming each bad field when
    there are any."""

    # Every type, with its status and title, in the OpenAPI document (docs/contracts/).
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "x-problem-types": {
                type_: {"status": status, "title": title}
                for type_, (status, title) in PROBLEM_TYPES.items()
            }
        },
    )

    type: str = Field(json_schema_extra={"enum": list(PROBLEM_TYPES)})
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class ProblemError(Exception):
    """Raise from a route to answer with a problem."""

    def __init__(
        self,
        type_: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or type_)
        self.type = type_
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra


def problem_response(
    type_: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    status: int | None = None,
) -> JSONResponse:
    """A problem-details response of a type from `PROBLEM_TYPES` (`status`: another HTTP status
    than the type's own, for the generic `http` type)."""
    status_of_type, title = PROBLEM_TYPES[type_]
    if status is None:
        status = status_of_type
    elif status != status_of_type:
        title = HTTPStatus(status).phrase
    body = HttpProblem(
        type=type_, title=title, status=status, detail=detail, instance=instance, errors=errors
    ).model_dump(exclude_none=True)
    body.update(extra or {})
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for routes that can answer with these problem statuses."""
    return {
        status: {"model": HttpProblem, "content": {PROBLEM_JSON: {}}, "description": "Problem"}
        for status in statuses
    }


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]


_STATUS_TYPES = {
    404: "urn:tasklight:problem:not-found",
    405: "urn:tasklight:problem:method-not-allowed",
    413: "urn:tasklight:problem:body-too-large",
}


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error the app can raise answer as problem details."""

    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.type,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(err["type"] == "json_invalid" for err in errors):
            return problem_response(
                "urn:tasklight:problem:malformed-json",
                "the body could not be parsed as JSON",
                instance=request.url.path,
                errors=errors,
            )
        return problem_response(
            "urn:tasklight:problem:invalid-request",
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "urn:tasklight:problem:http")
        headers = dict(exc.headers) if exc.headers else None
        return problem_response(
            type_,
            str(exc.detail),
            instance=request.url.path,
            headers=headers,
            status=exc.status_code,
        )

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Reached only by a bug; the details go to the log, never to the client.
        return problem_response(
            "urn:tasklight:problem:internal",
            "an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )
