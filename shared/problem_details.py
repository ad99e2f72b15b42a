"""RFC 9457 problem details: what every error tasklight answers with looks like, over HTTP
(`services/api/problems.py`) and over the WebSocket (`services/notifier/outbound.py`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ProblemDetails(BaseModel):
    """A problem: a `type` URN that says what went wrong (each listed with its status and title
    where the problems of its channel are), its `title`, `status` and `detail`. Members beyond
    these are the problem type's own."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str | None = None
