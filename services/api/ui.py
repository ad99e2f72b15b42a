"""The web UI: its HTML pages, its static files, and the little configuration the browser needs.

The pages are plain HTML shells; ES modules under `static/` fill them from the REST API and keep
them live through `tasklight.js` and the notifier's WebSocket. No build step.
"""

from __future__ import annotations

import importlib
import json
import os
from html import escape
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.api import demo, outcome
from services.api.headers import page_csp
from services.api.problems import ProblemError
from services.api.runtime import RuntimeDep, UserDep, authenticate
from services.api.tasks import _owned
from shared import waiting_page
from shared.auth import DEV_PASSWORD, DEV_USER, Principal
from shared.local_path import local_path
from shared.registry import Registry
from shared.settings import Settings
from shared.task import API_PREFIX

STATIC_DIR = Path(__file__).resolve().parent / "static"


def browser_package_dir() -> Path:
    """Where the browser package's modules are (`tasklight.js`, the client's one source): in a
    checkout `clients/js/`, in an installed wheel the copy the build puts beside the api."""
    checkout = Path(__file__).resolve().parents[2] / "clients" / "js"
    return checkout if (checkout / "tasklight.js").is_file() else STATIC_DIR.parent / "client_js"


class UiStaticFiles(StaticFiles):
    """`/static/`: the UI's own files, and the browser package's top-level modules (so
    `/static/tasklight.js` is the file clients/js/ publishes, and whatever it imports beside it)."""

    def __init__(self) -> None:
        super().__init__(directory=STATIC_DIR)
        self.package_dir = browser_package_dir()

    def lookup_path(self, path: str) -> tuple[str, os.stat_result | None]:
        """The UI's file at `path`, else a module of the browser package (no folders, no
        package.json or tests: only `*.js` at its top)."""
        found, stat = super().lookup_path(path)
        if stat is not None or "/" in path or not path.endswith(".js"):
            return found, stat
        candidate = self.package_dir / path
        if candidate.is_file():
            return str(candidate), candidate.stat()
        return "", None


router = APIRouter(include_in_schema=False)
config_router = APIRouter(prefix=API_PREFIX, tags=["meta"])


class UiSettings(BaseSettings):
    """Settings only the UI reads (`TASKLIGHT_<FIELD>`)."""

    model_config = SettingsConfigDict(env_prefix="TASKLIGHT_", extra="ignore")

    #: The notifier's WebSocket URL as browsers reach it (behind a proxy, say); by default the
    #: page's own host, the notifier's port and `/ws`. A path alone (`/ws`) means the page's own
    #: origin: a gateway that routes that path to the notifier (deploy/gateway/, deploy/k8s/).
    notifier_public_url: str = ""


class ClientConfig(BaseModel):
    """What a browser client needs to know to connect."""

    api_base: str
    notifier_url: str
    user: str
    role: str


def page_origin(request: Request, settings: Settings) -> str:
    """The origin the page of `request` is on, as far as URLs the api builds go.

    Never what the Host header says unchecked: `settings.public_url` when set, else the
    request's own origin if it is one of the allowed ones, else the api's local address.
    """
    public = settings.public_origin()
    if public is not None:
        return public
    asked = f"{request.url.scheme}://{request.url.netloc}"
    if asked in settings.origins():
        return asked
    return f"http://127.0.0.1:{settings.api_port}"


def notifier_url(request: Request, settings: Settings) -> str:
    """The notifier's WebSocket URL for a browser that loaded `request`."""
    configured = UiSettings().notifier_public_url
    if configured and not configured.startswith("/"):
        return configured
    origin = urlsplit(page_origin(request, settings))
    scheme = "wss" if origin.scheme == "https" else "ws"
    if configured:
        # Same origin as the page (a gateway routes the path to the notifier).
        return f"{scheme}://{origin.netloc}{configured}"
    host = origin.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{settings.notifier_port}/ws"


@config_router.get("/config", response_model=ClientConfig)
async def client_config(request: Request, runtime: RuntimeDep, user: UserDep) -> ClientConfig:
    """Where the notifier is, for clients that do not read it from the page."""
    return ClientConfig(
        api_base=API_PREFIX,
        notifier_url=notifier_url(request, runtime.settings),
        user=user.name,
        role=user.role.value,
    )


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</" would end the element: escape every "<".
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


class SignInRequired(Exception):
    """A page was asked for without a session: the browser is sent to the sign-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


async def page_user(request: Request) -> Principal:
    """The signed-in user of a page request; without one, off to `/login` and back after."""
    credentials = await authenticate(request)
    if credentials is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return credentials.principal


PageUserDep = Annotated[Principal, Depends(page_user)]


def safe_next(next_url: str | None) -> str:
    """A same-site path to go to after signing in; anything else (another site) becomes `/`."""
    return local_path(next_url) or "/"


def page(
    request: Request,
    runtime: RuntimeDep,
    user: Principal,
    *,
    name: str,
    title: str,
    body: str,
    data: Any = None,
    status_code: int = 200,
) -> HTMLResponse:
    """A UI page: the shared frame around `body`, running the module `static/ui/<name>.js`."""
    url = notifier_url(request, runtime.settings)
    data_script = (
        f'<script type="application/json" id="page-data">{_json_for_script(data)}</script>'
        if data is not None
        else ""
    )
    html = FRAME.format(
        title=escape(title),
        page=escape(name),
        notifier=escape(url),
        api=escape(API_PREFIX),
        user=escape(user.name),
        role=escape(user.role.value),
        body=body,
        data=data_script,
    )
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": page_csp(url)}
    return HTMLResponse(html, status_code=status_code, headers=headers)


@router.get("/", response_class=HTMLResponse)
async def home(request: Request, runtime: RuntimeDep, user: PageUserDep) -> HTMLResponse:
    """The start page: the test tasks to try and the simulated VMs, where their types exist."""
    body = home_body(runtime.registry)
    return page(request, runtime, user, name="home", title="Overview", body=body)


@router.get("/wait/{task_id}", response_class=HTMLResponse)
async def wait(
    task_id: str, request: Request, runtime: RuntimeDep, user: PageUserDep
) -> HTMLResponse:
    """The waiting page of a task: spinner and progress, then on to its next URL."""
    try:
        task = (await _owned(runtime, user, task_id)).view()
    except ProblemError:
        return _not_found(request, runtime, user, task_id)
    header = (task.ui.header if task.ui else None) or "Working on it"
    return page(
        request,
        runtime,
        user,
        name="wait",
        title=header,
        body=WAIT_BODY.format(header=escape(header)),
        data=task.model_dump(mode="json"),
    )


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def detail(
    task_id: str, request: Request, runtime: RuntimeDep, user: PageUserDep
) -> HTMLResponse:
    """The detail page of a task."""
    try:
        task = (await _owned(runtime, user, task_id)).view()
    except ProblemError:
        return _not_found(request, runtime, user, task_id)
    return page(
        request,
        runtime,
        user,
        name="detail",
        title=f"Task {task.name}",
        body=DETAIL_BODY,
        data=task.model_dump(mode="json"),
    )


def _not_found(
    request: Request, runtime: RuntimeDep, user: Principal, task_id: str
) -> HTMLResponse:
    body = NOT_FOUND_BODY.format(task_id=escape(task_id))
    return page(request, runtime, user, name="home", title="Not found", body=body, status_code=404)


@router.get("/login", response_class=HTMLResponse)
async def login(request: Request, runtime: RuntimeDep, next: str | None = None) -> Response:
    """The sign-in page; a signed-in browser goes straight on to `next`."""
    target = safe_next(next)
    if await authenticate(request) is not None:
        return RedirectResponse(target, status_code=303)
    hint = ""
    if runtime.settings.dev_mode:
        hint = DEV_HINT.format(user=DEV_USER, password=DEV_PASSWORD)
    html = LOGIN_PAGE.format(next=escape(target), hint=hint)
    return HTMLResponse(
        html, headers={"Cache-Control": "no-store", "Content-Security-Policy": page_csp("/")}
    )


def install(app: FastAPI, settings: Settings, registry: Registry) -> None:
    """Add the UI, the outcome route and (when its task types are in `registry`) the demo
    resource to `app`, with their on-ready hooks.

    A module named in `settings.task_modules` may define `register_outcomes(hooks)` to add
    on-ready hooks for its task types.
    """
    hooks = waiting_page.OutcomeHooks()
    with_demo = demo.available(registry)
    if with_demo:
        demo.register_outcomes(hooks)
    for module_name in filter(None, (m.strip() for m in settings.task_modules.split(","))):
        module = importlib.import_module(module_name)
        if hasattr(module, "register_outcomes"):
            module.register_outcomes(hooks)
    app.state.outcome_hooks = hooks

    @app.exception_handler(SignInRequired)
    async def on_sign_in_required(request: Request, exc: SignInRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?{urlencode({'next': exc.next_url})}", status_code=303)

    app.include_router(outcome.router)
    if with_demo:
        # Without its task types the demo has no VMs to show: no route, rather than an empty one.
        app.include_router(demo.router)
    app.include_router(config_router)
    app.include_router(router)
    app.mount("/static", UiStaticFiles(), name="static")


FRAME = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="tasklight-notifier" content="{notifier}">
<meta name="tasklight-api" content="{api}">
<title>{title} · tasklight</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css">
<script type="module" src="/static/ui/{page}.js"></script>
</head>
<body data-page="{page}">
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
  <a class="brand" href="/" aria-label="tasklight, overview">
    <span class="brand-mark" aria-hidden="true"></span><span class="brand-name">tasklight</span>
  </a>
  <div class="topbar-right">
    <span id="connection" class="connection" data-status="connecting" role="status"
      title="Live updates from the notifier">connecting</span>
    <button type="button" id="tasks-button" class="tasks-button" aria-haspopup="dialog"
      aria-controls="tasks-dialog">
      <span>Background tasks</span>
      <span id="tasks-badge" class="badge" data-count="0" aria-label="0 pending">0</span>
    </button>
    <a class="nav-link" href="/webhooks">Webhooks</a>
    <span class="user" title="Signed in as {user} ({role})" data-role="{role}">{user}</span>
    <button type="button" id="sign-out" class="link-button">Sign out</button>
  </div>
</header>
<div id="flash" class="flash-area" aria-live="polite"></div>
<main id="main" class="main">
{body}
</main>
<dialog id="tasks-dialog" class="tasks-dialog" aria-labelledby="tasks-dialog-title">
  <div class="dialog-head">
    <h2 id="tasks-dialog-title">Background tasks</h2>
    <button type="button" class="icon-button" data-close aria-label="Close">&times;</button>
  </div>
  <div class="tabs" role="tablist" aria-label="Task groups">
    <button type="button" role="tab" id="tab-pending" data-group="pending"
      aria-controls="tasks-panel">Pending <span class="count" data-count-for="pending">0</span>
    </button>
    <button type="button" role="tab" id="tab-failed" data-group="failed"
      aria-controls="tasks-panel">Failed <span class="count" data-count-for="failed">0</span>
    </button>
    <button type="button" role="tab" id="tab-finished" data-group="finished"
      aria-controls="tasks-panel">Finished <span class="count" data-count-for="finished">0</span>
    </button>
  </div>
  <div id="tasks-panel" class="tasks-panel" role="tabpanel" tabindex="-1"></div>
  <div id="tasks-undo" class="undo-area" aria-live="polite"></div>
</dialog>
<dialog id="confirm-dialog" class="confirm-dialog" aria-labelledby="confirm-title"
  aria-describedby="confirm-text">
  <h2 id="confirm-title">Cancel this task?</h2>
  <div id="confirm-text"></div>
  <div class="dialog-actions">
    <button type="button" class="button" data-answer="no">Keep it running</button>
    <button type="button" class="button danger" data-answer="yes">Cancel task</button>
  </div>
</dialog>
{data}
</body>
</html>
"""

LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · tasklight</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/app.css">
<script type="module" src="/static/ui/login.js"></script>
</head>
<body data-page="login">
<main id="main" class="main login">
<section class="card login-card" aria-labelledby="login-title">
  <div class="brand"><span class="brand-mark" aria-hidden="true"></span>
    <span class="brand-name">tasklight</span></div>
  <h1 id="login-title">Sign in</h1>
  {hint}
  <form id="login-form" class="form" data-next="{next}">
    <div class="field-row">
      <label for="login-username">User name</label>
      <input id="login-username" name="username" autocomplete="username" required autofocus
        autocapitalize="none" spellcheck="false">
    </div>
    <div class="field-row">
      <label for="login-password">Password</label>
      <input id="login-password" name="password" type="password"
        autocomplete="current-password" required>
    </div>
    <p id="login-error" class="form-error" role="alert" hidden></p>
    <div class="actions">
      <button type="submit" class="button primary">Sign in</button>
    </div>
  </form>
</section>
</main>
</body>
</html>
"""

DEV_HINT = """<p class="dev-hint" role="note"><strong>Development mode.</strong> Sign in as
  <code>{user}</code> with password <code>{password}</code>. Never run a deployment like this.
</p>"""

HOME_INTRO = """
<section class="intro">
  <h1>Background tasks, live</h1>
  <p>Work that takes time is queued for a worker; this page answers at once and shows each
  change as it happens, pushed over a WebSocket. Open <em>Background tasks</em> at the top right
  to watch them.</p>
</section>
"""

COUNT_PART = """
  <p class="muted">A <code>test.count</code> task counts for <em>N</em> rounds, one progress step
  per round (about a second each).</p>
  <form id="count-form" class="form">
    <div class="field-row">
      <label for="count-rounds">Rounds</label>
      <input id="count-rounds" name="rounds" type="number" min="0" max="100000" value="5"
        required inputmode="numeric">
    </div>
    <div class="field-row">
      <label for="count-round-s">Seconds per round</label>
      <input id="count-round-s" name="round_s" type="number" min="0" max="3600" step="0.1"
        value="1" required inputmode="decimal">
    </div>
    <div class="actions">
      <button type="submit" class="button primary" data-mode="queue">Queue it</button>
      <button type="submit" class="button" data-mode="wait">Queue and wait</button>
    </div>
  </form>
"""

FAIL_PART = """
  <p class="muted">A <code>test.fail</code> task fails after a moment, to see how failure looks.
  </p>
  <div class="actions">
    <button type="button" id="fail-queue" class="button">Queue a failing task</button>
    <button type="button" id="fail-wait" class="button">Queue and wait</button>
  </div>
"""

TEST_TASKS_CARD = """
<section class="card" aria-labelledby="count-title">
  <h2 id="count-title">Try a test task</h2>
{parts}
</section>
"""

VMS_CARD = """
<section class="card" aria-labelledby="vms-title">
  <h2 id="vms-title">Virtual machines <span class="tag">demo</span></h2>
  <p class="muted">Powering a VM off or on is queued, not done in this request: the worker makes
  the (simulated) provider call, and the state below changes when it is done.</p>
  <ul id="vm-list" class="vm-list" aria-live="polite"><li class="muted">Loading…</li></ul>
</section>
"""

NOTHING_TO_TRY_CARD = """
<section class="card" aria-labelledby="types-title">
  <h2 id="types-title">Your tasks</h2>
  <p class="muted">The applications of this deployment submit its tasks through the
  <a href="/docs">REST API</a>; <em>Background tasks</em> shows yours as they run.</p>
</section>
"""


#: The test types the start page offers, each with its part of the test-task card.
HOME_TEST_PARTS = (("test.count", COUNT_PART), ("test.fail", FAIL_PART))


def home_body(registry: Registry) -> str:
    """The start page's body: a form for each built-in test type and the VM demo, each only
    when its task types are registered (`TASKLIGHT_BUILTIN_TASKS` is off by default), so the
    page never offers a task that would be refused."""
    parts = [part for name, part in HOME_TEST_PARTS if name in registry]
    cards = []
    if parts:
        cards.append(TEST_TASKS_CARD.format(parts='  <div class="divider"></div>'.join(parts)))
    if demo.available(registry):
        cards.append(VMS_CARD)
    if not cards:
        cards.append(NOTHING_TO_TRY_CARD)
    return HOME_INTRO + '<div class="grid">' + "".join(cards) + "</div>\n"


WAIT_BODY = """
<section class="wait card" aria-labelledby="wait-header">
  <div class="spinner" aria-hidden="true"></div>
  <h1 id="wait-header">{header}</h1>
  <p id="wait-message" class="wait-message"></p>
  <div class="wait-progress" id="wait-progress"></div>
  <p id="wait-state" class="wait-state muted" role="status"></p>
  <p class="muted small">You can leave this page: the task goes on, and
  <em>Background tasks</em> shows it. <a id="wait-detail" href="#">Task details</a></p>
</section>
"""

DETAIL_BODY = """
<div id="detail" class="detail"></div>
"""

NOT_FOUND_BODY = """
<section class="card empty-state">
  <h1>No such task</h1>
  <p>There is no task <code>{task_id}</code>, or it has been deleted.</p>
  <p><a class="button" href="/">Back to the overview</a></p>
</section>
"""
