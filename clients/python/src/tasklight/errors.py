"""The client's errors: one root, and one class per thing a caller may handle differently."""

from __future__ import annotations

from typing import Any

from tasklight.types import Task


class TasklightError(Exception):
    """Root of the client's errors."""


class Unreachable(TasklightError):
    """The API or the notifier did not answer; retry later or check the URL."""


class ApiError(TasklightError):
    """The API answered with a problem (RFC 9457); `status` and `problem` say which."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or f"HTTP {status}"
        super().__init__(detail)
        self.status = status
        self.problem = problem


class Unauthorized(ApiError):
    """No credentials, or credentials that are not accepted (HTTP 401)."""


class NotFound(ApiError):
    """No such task (or not yours)."""


class WaitTimeout(TasklightError):
    """A wait ran out of time; `pending` holds the tasks still pending, as last seen."""

    def __init__(self, timeout_s: float, pending: list[Task], note: str = "") -> None:
        names = ", ".join(f"{t['id']} ({t['name']}, {t['state']})" for t in pending)
        super().__init__(f"still pending after {timeout_s:g} s: {names or 'none'}{note}")
        self.timeout_s = timeout_s
        self.pending = pending
