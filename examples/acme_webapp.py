"""A team's web app that runs its slow work on tasklight: a FastAPI backend and one page.

The app has users and a sign-in of its own (here a stand-in: a cookie that names the user). Each
of its users has a tasklight user of the same name whose API token the backend keeps, never the
browser (`tasklight-server users create alice`, `tasklight-server users token alice`). So
tasklight's per-user visibility holds end to end: alice's tasks are alice's.

- `POST /reports` submits `reports.render` (examples/reports) on behalf of the signed-in user
  and answers the task's id;
- the page follows that task with `tasklight.js` over the notifier's WebSocket. The page is on
  this app's origin, not tasklight's, so it authenticates each connection with a single-use
  ticket that this backend gets from tasklight (`POST /tasklight/ws-tickets`). The notifier must
  list this app's origin in `TASKLIGHT_ALLOWED_ORIGINS`.

Run it next to `make run` (whose workers know `reports.render` when started with
`PYTHONPATH=examples/reports TASKLIGHT_TASK_MODULES=acme_reports.tasks`):

    ACME_TASKLIGHT_TOKENS='{"alice": "tl_..."}' python examples/acme_webapp.py

then open http://localhost:8080/?user=alice. docs/backend.md walks through it.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

#: The browser package's modules: clients/js/ of a tasklight checkout here; in a project of your
#: own, where your build puts it (`npm install ./clients/js` → node_modules/tasklight-js/).
BROWSER_PACKAGE = Path(__file__).resolve().parents[1] / "clients" / "js"
#: What a page imports: `tasklight.js`, and the protocol's constants it imports beside it.
BROWSER_MODULES = ("tasklight.js", "protocol.js")


@dataclass(frozen=True)
class TasklightConfig:
    """Where tasklight is, and the token of each user of this app (from its secret store)."""

    api_url: str
    #: The notifier's WebSocket URL as browsers reach it.
    notifier_url: str
    tokens: dict[str, str]

    @classmethod
    def from_env(cls) -> TasklightConfig:
        """`TASKLIGHT_API_URL`, `TASKLIGHT_WS_URL` and `ACME_TASKLIGHT_TOKENS` (JSON)."""
        return cls(
            api_url=os.environ.get("TASKLIGHT_API_URL", "http://127.0.0.1:8000"),
            notifier_url=os.environ.get("TASKLIGHT_WS_URL", "ws://127.0.0.1:8001/ws"),
            tokens=json.loads(os.environ.get("ACME_TASKLIGHT_TOKENS", "{}")),
        )


class ReportRequest(BaseModel):
    """What the page's form sends."""

    title: str = Field(min_length=1, max_length=200)
    sections: list[str] = Field(min_length=1, max_length=50)


def signed_in(request: Request) -> str:
    """Your own sign-in goes here; this stand-in trusts a cookie naming a known user."""
    config: TasklightConfig = request.app.state.config
    user = request.cookies.get("acme_user", "")
    if user not in config.tokens:
        raise HTTPException(401, "sign in first")
    return user


User = Annotated[str, Depends(signed_in)]


async def tasklight(request: Request, user: str, method: str, path: str, **kwargs: Any) -> Any:
    """Call tasklight's API as `user`; its problem details become this app's error."""
    config: TasklightConfig = request.app.state.config
    client: httpx.AsyncClient = request.app.state.tasklight
    headers = {"Authorization": f"Bearer {config.tokens[user]}"}
    try:
        answer = await client.request(method, f"/api/v1{path}", headers=headers, **kwargs)
    except httpx.TransportError:
        raise HTTPException(503, "the task service did not answer; try again") from None
    if not answer.is_success:
        problem = answer.json()
        # Pass on what the user can act on (a bad field, a rate limit); hide the rest.
        status = answer.status_code if answer.status_code in (422, 429, 503) else 502
        raise HTTPException(status, problem.get("detail") or problem.get("title"))
    return answer.json()


def create_app(config: TasklightConfig) -> FastAPI:
    """The app; one HTTP client to tasklight for all requests, each with its user's token."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with httpx.AsyncClient(base_url=config.api_url, timeout=10) as client:
            app.state.tasklight = client
            yield

    app = FastAPI(title="ACME reports", lifespan=lifespan)
    app.state.config = config

    @app.post("/reports", status_code=202)
    async def start_report(body: ReportRequest, user: User, request: Request) -> dict[str, str]:
        """Queue a report for the signed-in user; the page follows it by its id."""
        # A JSON body: a form on another site cannot send one without CORS, which this app does
        # not allow, so the SameSite=Lax cookie plus this is the CSRF defence here.
        task = await tasklight(
            request,
            user,
            "POST",
            "/tasks",
            json={
                "name": "reports.render",
                "args": {**body.model_dump(), "section_s": 0.3},
                "ui": {"header": f"Rendering “{body.title}”"},
                "metadata": {"requested_from": "acme-webapp"},
            },
        )
        return {"task_id": task["id"]}

    @app.post("/tasklight/ws-tickets", status_code=201)
    async def ws_ticket(user: User, request: Request) -> dict[str, str]:
        """A single-use WebSocket ticket for the signed-in user (what `tasklight.js` asks for
        with `tickets: true` and `apiBase: "/tasklight"`)."""
        ticket: dict[str, str] = await tasklight(request, user, "POST", "/ws-tickets")
        return ticket

    @app.get("/static/{module}")
    async def browser_module(module: str) -> Response:
        """tasklight's browser package, served from this origin: a module script from another
        origin would need CORS headers that tasklight's API does not send."""
        if module not in BROWSER_MODULES:
            raise HTTPException(status_code=404)
        return Response((BROWSER_PACKAGE / module).read_text(), media_type="text/javascript")

    @app.get("/", response_model=None)
    async def page(user: str | None = None) -> HTMLResponse | RedirectResponse:
        """The page; `?user=NAME` is the stand-in sign-in."""
        if user is not None:
            redirect = RedirectResponse("/", status_code=303)
            redirect.set_cookie("acme_user", user, httponly=True, samesite="lax")
            return redirect
        return HTMLResponse(PAGE.replace("{{NOTIFIER_URL}}", json.dumps(config.notifier_url)))

    return app


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>ACME reports</title>
<form id="report">
  <input name="title" value="Q3 sales" aria-label="Title">
  <input name="sections" value="North, South, West" aria-label="Sections">
  <button>Render</button>
</form>
<p>Connection: <span id="connection">idle</span></p>
<p>Report: <span id="state">none</span> <span id="progress"></span></p>
<p id="result"></p>
<script type="module">
  import { TaskLight, isFinal } from "/static/tasklight.js";

  const $ = (id) => document.getElementById(id);
  const tl = new TaskLight({
    notifierUrl: {{NOTIFIER_URL}},
    apiBase: "/tasklight",  // this app's routes: tickets come from POST /tasklight/ws-tickets
    tickets: true,
  });
  tl.on("status", ({ status }) => ($("connection").textContent = status));

  $("report").onsubmit = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    const answer = await fetch("/reports", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        title: form.get("title"),
        sections: form.get("sections").split(",").map((s) => s.trim()).filter(Boolean),
      }),
    });
    if (!answer.ok) {
      $("state").textContent = `refused: ${(await answer.json()).detail}`;
      return;
    }
    const { task_id } = await answer.json();
    const stop = tl.watch(task_id, (task) => {
      const report = task.progress_reports[0];
      $("state").textContent = task.state;
      $("progress").textContent = report ? `${report.done}/${report.total} ${report.suffix}` : "";
      if (isFinal(task.state)) {
        $("result").textContent = task.result ? `${task.result.file}, ${task.result.bytes} bytes`
                                              : task.error.message;
        stop();
      }
    });
  };
</script>
"""


def main() -> None:
    """Serve the app on http://localhost:8080/ (`ACME_PORT` to change)."""
    import uvicorn

    port = int(os.environ.get("ACME_PORT", "8080"))
    uvicorn.run(create_app(TasklightConfig.from_env()), host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
