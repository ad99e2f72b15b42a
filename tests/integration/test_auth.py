"""Users and permissions: who may see and do what, over REST and WebSocket.

The authorisation matrix runs every REST endpoint and every WebSocket action as four actors: the
task's owner, another user, an administrator and someone anonymous. These tests run with
development mode off, as a deployment does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.api import ui, webhooks_page
from services.api.app import create_app
from services.notifier.app import Notifier
from services.stack import free_port
from shared.auth import (
    CSRF_COOKIE,
    DEV_PASSWORD,
    DEV_TOKEN,
    DEV_USER,
    SESSION_COOKIE,
    AuthStore,
    Role,
)
from shared.clock import utcnow
from shared.ids import new_task_id
from shared.lifecycle import Phase, TaskState
from shared.questions import Question, asked
from shared.settings import Settings
from shared.store import Store
from shared.webhooks.events import EventType
from shared.webhooks.records import Endpoint as WebhookEndpoint
from shared.webhooks.records import EndpointSecret
from tests.support import stored_task
from tests.support.servers import ServerThread
from tests.support.wsclient import Message, Socket, tasks_of, ws_connect

pytestmark = pytest.mark.integration

OWNER, OTHER, ADMIN, ANONYMOUS = "owner", "other", "admin", "anonymous"
ACTORS = (OWNER, OTHER, ADMIN, ANONYMOUS)
NAMES = {OWNER: "alice", OTHER: "bob", ADMIN: "root"}
TOKEN_CACHE_S = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test's settings with development mode off, and a short token cache."""
    return settings.model_copy(update={"dev_mode": False, "token_cache_s": TOKEN_CACHE_S})


@dataclass
class People:
    """Users of the test and their API tokens; `client(actor)` talks to the API as one."""

    base_url: str
    tokens: dict[str, str]
    store: Store
    auth: AuthStore

    def headers(self, actor: str) -> dict[str, str]:
        """The Authorization header of an actor (none for anonymous)."""
        token = self.tokens.get(actor)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def client(self, actor: str) -> httpx.AsyncClient:
        """An HTTP client acting as `actor`."""
        return httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers(actor), follow_redirects=False
        )

    async def task(
        self, state: TaskState = TaskState.WAITING, owner: str = "alice", phase: Phase | None = None
    ) -> str:
        """A task stored directly in `state` (no broker: the API reads the database); in the
        phase `awaiting_answer`, with a question."""
        task = stored_task(name="test.count", owner=owner, state=state)
        if phase is Phase.AWAITING_ANSWER:
            question = asked(Question.approval("Go on?"), "question-1", utcnow())
            task = task.model_copy(update={"phase": phase, "question": question})
        if task.final:
            task = task.model_copy(update={"finished_at": utcnow() - timedelta(hours=1)})
        await self.store.tasks.insert(task)
        return task.id


@pytest.fixture
async def people(settings: Settings, store: Store) -> AsyncIterator[People]:
    """alice and bob (users) and root (an administrator), each with a token; the API running."""
    auth = AuthStore(store.accounts)
    tokens = {}
    for actor, name in NAMES.items():
        role = Role.ADMIN if actor == ADMIN else Role.USER
        await auth.create_user(name, role, password=f"{name}-password")
        tokens[actor] = await auth.issue_token(name)
    # Webhook endpoints on this machine's loopback are allowed only when this says so.
    settings = settings.model_copy(update={"webhook_allow_loopback": True})
    async with ServerThread(create_app(settings), settings.api_port):
        yield People(f"http://127.0.0.1:{settings.api_port}", tokens, store, auth)


# ---- the REST matrix ----------------------------------------------------------------------------

Call = Callable[[httpx.AsyncClient, People], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Endpoint:
    """One route, how to call it, and the status each actor gets."""

    method: str
    path: str
    call: Call
    expect: dict[str, int]


def _same(owner: int, other: int, admin: int, anonymous: int) -> dict[str, int]:
    return {OWNER: owner, OTHER: other, ADMIN: admin, ANONYMOUS: anonymous}


async def _on_task(
    client: httpx.AsyncClient, people: People, method: str, path: str, state: TaskState
) -> httpx.Response:
    task_id = await people.task(state)
    return await client.request(method, path.format(id=task_id))


def _task_call(method: str, path: str, state: TaskState = TaskState.WAITING) -> Call:
    async def call(client: httpx.AsyncClient, people: People) -> httpx.Response:
        return await _on_task(client, people, method, path, state)

    return call


def _answer_call() -> Call:
    async def call(client: httpx.AsyncClient, people: People) -> httpx.Response:
        task_id = await people.task(TaskState.RUNNING, phase=Phase.AWAITING_ANSWER)
        return await client.post(f"/api/v1/tasks/{task_id}/answer", json={"answer": "approve"})

    return call


async def _alices_webhook(people: People) -> str:
    """A webhook endpoint of alice's, stored directly; its id."""
    now = utcnow()
    endpoint = WebhookEndpoint(
        id=new_task_id(),
        owner="alice",
        url="http://127.0.0.1:9/hook",
        events=[EventType.COMPLETED],
        secrets=[EndpointSecret(secret="whsec_" + "A" * 32, created_at=now)],
        created_at=now,
        updated_at=now,
    )
    await people.store.webhooks.endpoints.create(endpoint)
    return endpoint.id


def _webhook_call(method: str, path: str, **kwargs: Any) -> Call:
    async def call(client: httpx.AsyncClient, people: People) -> httpx.Response:
        endpoint_id = await _alices_webhook(people)
        return await client.request(method, path.format(id=endpoint_id), **kwargs)

    return call


def _plain(method: str, path: str, **kwargs: Any) -> Call:
    async def call(client: httpx.AsyncClient, people: People) -> httpx.Response:
        return await client.request(method, path, **kwargs)

    return call


SUBMIT = {"json": {"name": "test.count", "args": {"rounds": 0}}}
PURGE = {"params": {"finished_before": "2999-01-01T00:00:00Z"}}

#: Every route of the app that needs a user, as each actor meets it. A task a call names is
#: alice's: the owner's. `test_the_matrix_covers_every_route` keeps this list complete.
MATRIX = [
    Endpoint(
        "POST",
        "/api/v1/tasks",
        _plain("POST", "/api/v1/tasks", **SUBMIT),
        _same(202, 202, 202, 401),
    ),
    Endpoint(
        "POST",
        "/api/v1/tasks:batch",
        _plain("POST", "/api/v1/tasks:batch", json={"tasks": [SUBMIT["json"]]}),
        _same(202, 202, 202, 401),
    ),
    Endpoint("GET", "/api/v1/tasks", _plain("GET", "/api/v1/tasks"), _same(200, 200, 200, 401)),
    Endpoint(
        "DELETE",
        "/api/v1/tasks",
        _plain("DELETE", "/api/v1/tasks", **PURGE),
        _same(200, 200, 200, 401),
    ),
    Endpoint(
        "GET",
        "/api/v1/tasks/{task_id}",
        _task_call("GET", "/api/v1/tasks/{id}"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "GET",
        "/api/v1/tasks/{task_id}/events",
        _task_call("GET", "/api/v1/tasks/{id}/events"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "GET",
        "/api/v1/tasks/{task_id}/outcome",
        _task_call("GET", "/api/v1/tasks/{id}/outcome"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "POST",
        "/api/v1/tasks/{task_id}/cancel",
        _task_call("POST", "/api/v1/tasks/{id}/cancel"),
        _same(202, 404, 202, 401),
    ),
    # Only the owner or an administrator answers a task's question; to anyone else it is not there.
    Endpoint("POST", "/api/v1/tasks/{task_id}/answer", _answer_call(), _same(202, 404, 202, 401)),
    Endpoint(
        "DELETE",
        "/api/v1/tasks/{task_id}",
        _task_call("DELETE", "/api/v1/tasks/{id}", TaskState.COMPLETED),
        _same(204, 404, 204, 401),
    ),
    Endpoint(
        "GET", "/api/v1/task-types", _plain("GET", "/api/v1/task-types"), _same(200, 200, 200, 401)
    ),
    Endpoint("GET", "/api/v1/workers", _plain("GET", "/api/v1/workers"), _same(200, 200, 200, 401)),
    Endpoint("GET", "/api/v1/config", _plain("GET", "/api/v1/config"), _same(200, 200, 200, 401)),
    Endpoint(
        "GET", "/api/v1/demo/vms", _plain("GET", "/api/v1/demo/vms"), _same(200, 200, 200, 401)
    ),
    Endpoint("GET", "/api/v1/session", _plain("GET", "/api/v1/session"), _same(200, 200, 200, 401)),
    Endpoint(
        "DELETE", "/api/v1/session", _plain("DELETE", "/api/v1/session"), _same(204, 204, 204, 401)
    ),
    Endpoint(
        "POST",
        "/api/v1/ws-tickets",
        _plain("POST", "/api/v1/ws-tickets"),
        _same(201, 201, 201, 401),
    ),
    # Webhook endpoints: a user's own (an admin's: anyone's); another's is not there.
    Endpoint(
        "POST",
        "/api/v1/webhooks",
        _plain("POST", "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"}),
        _same(201, 201, 201, 401),
    ),
    Endpoint(
        "GET", "/api/v1/webhooks", _plain("GET", "/api/v1/webhooks"), _same(200, 200, 200, 401)
    ),
    Endpoint(
        "GET",
        "/api/v1/webhooks/{endpoint_id}",
        _webhook_call("GET", "/api/v1/webhooks/{id}"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "PATCH",
        "/api/v1/webhooks/{endpoint_id}",
        _webhook_call("PATCH", "/api/v1/webhooks/{id}", json={"description": "mine"}),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "DELETE",
        "/api/v1/webhooks/{endpoint_id}",
        _webhook_call("DELETE", "/api/v1/webhooks/{id}"),
        _same(204, 404, 204, 401),
    ),
    Endpoint(
        "POST",
        "/api/v1/webhooks/{endpoint_id}/rotate-secret",
        _webhook_call("POST", "/api/v1/webhooks/{id}/rotate-secret"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "GET",
        "/api/v1/webhooks/{endpoint_id}/deliveries",
        _webhook_call("GET", "/api/v1/webhooks/{id}/deliveries"),
        _same(200, 404, 200, 401),
    ),
    Endpoint(
        "POST",
        "/api/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay",
        _webhook_call("POST", "/api/v1/webhooks/{id}/deliveries/" + "0" * 32 + "/replay"),
        _same(404, 404, 404, 401),
    ),
    # Pages: a browser without a session is sent to sign in (303), not shown a 401.
    Endpoint("GET", "/webhooks", _plain("GET", "/webhooks"), _same(200, 200, 200, 303)),
    Endpoint("GET", "/", _plain("GET", "/"), _same(200, 200, 200, 303)),
    Endpoint("GET", "/wait/{task_id}", _task_call("GET", "/wait/{id}"), _same(200, 404, 200, 303)),
    Endpoint(
        "GET", "/tasks/{task_id}", _task_call("GET", "/tasks/{id}"), _same(200, 404, 200, 303)
    ),
]

#: Routes anyone may call: health for probes, the sign-in page and call, the API's schema.
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/login"),
    ("POST", "/api/v1/session"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}


def test_the_matrix_covers_every_route(settings: Settings) -> None:
    # Every route of the API is in its OpenAPI document; the pages are the UI router's.
    paths = create_app(settings).openapi()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    pages = [
        r for r in (*ui.router.routes, *webhooks_page.router.routes) if isinstance(r, APIRoute)
    ]
    assert pages, "the UI router's pages were not found"
    routes |= {(m, r.path) for r in pages for m in r.methods or ()}
    routes -= {(m, p) for m, p in routes if m == "HEAD"}
    covered = {(e.method, e.path) for e in MATRIX} | PUBLIC
    assert routes - covered == set(), "add these routes to the authorisation matrix"
    # And no entry names a route that is gone.
    assert {(e.method, e.path) for e in MATRIX} <= routes


@pytest.mark.parametrize("endpoint", MATRIX, ids=lambda e: f"{e.method} {e.path}")
async def test_authorisation_matrix(people: People, endpoint: Endpoint) -> None:
    answers = {}
    for actor in ACTORS:
        async with people.client(actor) as client:
            response = await endpoint.call(client, people)
        answers[actor] = response.status_code
        if response.status_code == 401:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if response.status_code == 303:
            assert response.headers["location"].startswith("/login?next=")
    assert answers == endpoint.expect


async def test_each_user_lists_only_their_tasks_and_an_admin_lists_all(people: People) -> None:
    mine, theirs = await people.task(), await people.task(owner="bob")

    async def listed(actor: str, **params: str) -> set[str]:
        async with people.client(actor) as client:
            response = await client.get("/api/v1/tasks", params=params)
        assert response.status_code == 200, response.text
        return {t["id"] for t in response.json()["results"]}

    assert await listed(OWNER) == {mine}
    assert await listed(OTHER) == {theirs}
    assert await listed(ADMIN) == {mine, theirs}
    assert await listed(ADMIN, owner="alice") == {mine}
    assert await listed(OTHER, owner="alice") == set()


async def test_a_purge_by_another_user_leaves_the_owners_tasks(people: People) -> None:
    mine = await people.task(TaskState.COMPLETED)
    async with people.client(OTHER) as client:
        purged = await client.delete("/api/v1/tasks", params=PURGE["params"])
    assert purged.json() == {"deleted": 0}
    assert await people.store.tasks.get(mine) is not None


async def test_a_task_submitted_by_a_user_is_theirs(people: People) -> None:
    async with people.client(OWNER) as client:
        response = await client.post("/api/v1/tasks", json=SUBMIT["json"])
    assert response.json()["owner"] == "alice"


async def test_child_tasks_belong_to_the_owner_of_their_parent(people: People, worker: Any) -> None:
    async with people.client(OWNER) as client:
        parent = (
            await client.post("/api/v1/tasks", json={"name": "test.spawn", "args": {"children": 2}})
        ).json()
        for _ in range(300):
            done = await people.store.tasks.get(parent["id"])
            if done and done.state == "completed":
                break
            await asyncio.sleep(0.1)
        assert done is not None
        assert done.state == "completed"
        children = await people.store.tasks.children(done)
        assert len(children) == 2
        assert {child.owner for child in children} == {"alice"}
        for child in children:
            assert (await client.get(f"/api/v1/tasks/{child.id}")).status_code == 200
    async with people.client(OTHER) as client:
        for child in children:
            assert (await client.get(f"/api/v1/tasks/{child.id}")).status_code == 404


async def test_wrong_tokens_and_malformed_headers_are_401(people: People) -> None:
    async with httpx.AsyncClient(base_url=people.base_url) as client:
        for header in ("Bearer tl_not-a-token", "Basic YWxpY2U6eA==", "Bearer", "tl_x"):
            response = await client.get("/api/v1/tasks", headers={"Authorization": header})
            assert response.status_code == 401, header
            assert response.json()["type"] == "urn:tasklight:problem:unauthorized"


async def test_a_revoked_token_stops_working(people: People) -> None:
    async with people.client(OTHER) as client:
        assert (await client.get("/api/v1/tasks")).status_code == 200
        assert await people.auth.revoke_tokens("bob") == 1
        # The api remembers a token's owner for `token_cache_s`, then asks again.
        await asyncio.sleep(TOKEN_CACHE_S + 0.1)
        assert (await client.get("/api/v1/tasks")).status_code == 401


async def test_health_needs_no_credentials(people: People) -> None:
    async with people.client(ANONYMOUS) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200


# ---- sessions, CSRF and development mode --------------------------------------------------------


@asynccontextmanager
async def sign_in(base_url: str, username: str, password: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client holding the cookies of a successful sign-in."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post(
            "/api/v1/session", json={"username": username, "password": password}
        )
        assert response.status_code == 200, response.text
        yield client


async def test_signing_in_sets_an_httponly_session_cookie_and_a_csrf_cookie(
    people: People,
) -> None:
    async with httpx.AsyncClient(base_url=people.base_url) as client:
        response = await client.post(
            "/api/v1/session", json={"username": "alice", "password": "alice-password"}
        )
    assert response.status_code == 200
    cookies = {c.split("=", 1)[0]: c.lower() for c in response.headers.get_list("set-cookie")}
    assert "httponly" in cookies[SESSION_COOKIE]
    assert "samesite=lax" in cookies[SESSION_COOKIE]
    assert "httponly" not in cookies[CSRF_COOKIE]
    assert "samesite=strict" in cookies[CSRF_COOKIE]
    body = response.json()
    assert body["user"] == {"name": "alice", "role": "user"}
    assert body["csrf_token"]


async def test_wrong_passwords_and_unknown_users_are_refused_alike(people: People) -> None:
    async with httpx.AsyncClient(base_url=people.base_url) as client:
        for username, password in (("alice", "wrong"), ("nobody", "alice-password")):
            response = await client.post(
                "/api/v1/session", json={"username": username, "password": password}
            )
            assert response.status_code == 401
            assert response.json()["type"] == "urn:tasklight:problem:bad-credentials"
            assert SESSION_COOKIE not in response.cookies


async def test_a_cookie_write_needs_the_csrf_token(people: People) -> None:
    async with sign_in(people.base_url, "alice", "alice-password") as client:
        # Reading needs no token: it changes nothing.
        assert (await client.get("/api/v1/tasks")).status_code == 200
        refused = await client.post("/api/v1/tasks", json=SUBMIT["json"])
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:tasklight:problem:csrf"
        wrong = await client.post(
            "/api/v1/tasks", json=SUBMIT["json"], headers={"X-CSRF-Token": "guess"}
        )
        assert wrong.status_code == 403
        csrf = client.cookies[CSRF_COOKIE]
        accepted = await client.post(
            "/api/v1/tasks", json=SUBMIT["json"], headers={"X-CSRF-Token": csrf}
        )
        assert accepted.status_code == 202
        assert accepted.json()["owner"] == "alice"
        # Nothing was stored for the refused writes.
        listed = (await client.get("/api/v1/tasks")).json()["results"]
        assert [t["id"] for t in listed] == [accepted.json()["id"]]


async def test_signing_out_ends_the_session(people: People) -> None:
    async with sign_in(people.base_url, "alice", "alice-password") as client:
        secret = client.cookies[SESSION_COOKIE]
        csrf = client.cookies[CSRF_COOKIE]
        assert (await client.delete("/api/v1/session", headers={"X-CSRF-Token": csrf})).is_success
        # Even a client that kept the cookie gets nothing for it now.
        client.cookies.set(SESSION_COOKIE, secret)
        assert (await client.get("/api/v1/tasks")).status_code == 401


async def test_the_sign_in_page_sends_a_signed_in_browser_on_to_a_local_next(
    people: People,
) -> None:
    async with sign_in(people.base_url, "alice", "alice-password") as client:
        local = await client.get("/login", params={"next": "/tasks/x?y=1"})
        assert (local.status_code, local.headers["location"]) == (303, "/tasks/x?y=1")
        away = await client.get("/login", params={"next": "https://evil.example/"})
        assert away.headers["location"] == "/"
    async with people.client(ANONYMOUS) as anonymous:
        page = await anonymous.get("/login", params={"next": "/wait/1"})
        assert page.status_code == 200
        assert 'data-next="/wait/1"' in page.text
        assert "Development mode" not in page.text


async def test_development_credentials_work_only_in_development_mode(
    settings: Settings, people: People
) -> None:
    # The people fixture's API runs with development mode off.
    async with httpx.AsyncClient(base_url=people.base_url) as client:
        token = await client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {DEV_TOKEN}"})
        assert token.status_code == 401
        password = await client.post(
            "/api/v1/session", json={"username": DEV_USER, "password": DEV_PASSWORD}
        )
        assert password.status_code == 401
    # A session opened in development mode does not outlive it.
    dev_settings = settings.model_copy(update={"dev_mode": True, "api_port": free_port()})
    dev_url = f"http://127.0.0.1:{dev_settings.api_port}"
    async with (
        ServerThread(create_app(dev_settings), dev_settings.api_port),
        sign_in(dev_url, DEV_USER, DEV_PASSWORD) as dev_client,
    ):
        assert (await dev_client.get("/api/v1/tasks")).status_code == 200
        secret = dev_client.cookies[SESSION_COOKIE]
    async with httpx.AsyncClient(base_url=people.base_url) as client:
        client.cookies.set(SESSION_COOKIE, secret)
        assert (await client.get("/api/v1/tasks")).status_code == 401


async def test_the_first_administrator_comes_from_the_environment(
    settings: Settings, store: Store
) -> None:
    configured = settings.model_copy(
        update={
            "admin_user": "boss",
            "admin_password": "boss-password",
            "admin_token": "tl_configured-admin-token",
        }
    )
    async with ServerThread(create_app(configured), configured.api_port):
        base_url = f"http://127.0.0.1:{configured.api_port}"
        headers = {"Authorization": "Bearer tl_configured-admin-token"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
            me = (await client.get("/api/v1/session")).json()
            assert me["user"] == {"name": "boss", "role": "admin"}
            assert (await client.get("/api/v1/tasks")).status_code == 200
        async with sign_in(base_url, "boss", "boss-password"):
            pass  # the password works too
    stored = await store.db["api_tokens"].find_one({"user": "boss"})
    assert stored is not None
    assert "configured-admin-token" not in json.dumps(stored, default=str)


# ---- limits -------------------------------------------------------------------------------------


async def test_task_args_over_the_limit_are_413(settings: Settings, store: Store) -> None:
    small = settings.model_copy(update={"max_args_bytes": 100})
    auth = AuthStore(store.accounts)
    await auth.create_user("carol", Role.USER)
    token = await auth.issue_token("carol")
    async with (
        ServerThread(create_app(small), small.api_port),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{small.api_port}",
            headers={"Authorization": f"Bearer {token}"},
        ) as client,
    ):
        response = await client.post(
            "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 1, "pad": "x" * 200}}
        )
        assert response.status_code == 413
        assert response.json()["type"] == "urn:tasklight:problem:args-too-large"
        assert (await client.get("/api/v1/tasks")).json()["results"] == []


async def test_submissions_over_the_per_minute_limit_are_429_with_retry_after(
    settings: Settings, store: Store
) -> None:
    limited = settings.model_copy(update={"submit_rate_per_minute": 3})
    auth = AuthStore(store.accounts)
    await auth.create_user("dave", Role.USER)
    await auth.create_user("erin", Role.USER)
    dave, erin = await auth.issue_token("dave"), await auth.issue_token("erin")
    base_url = f"http://127.0.0.1:{limited.api_port}"
    async with ServerThread(create_app(limited), limited.api_port):
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {dave}"}
        ) as client:
            statuses = [
                (await client.post("/api/v1/tasks", json=SUBMIT["json"])).status_code
                for _ in range(3)
            ]
            assert statuses == [202, 202, 202]
            refused = await client.post("/api/v1/tasks", json=SUBMIT["json"])
            assert refused.status_code == 429
            assert refused.json()["type"] == "urn:tasklight:problem:rate-limited"
            # The oldest ten-second slot of the sliding minute leaves it over ten seconds.
            assert 1 <= int(refused.headers["Retry-After"]) <= 70
            assert len((await client.get("/api/v1/tasks")).json()["results"]) == 3
        # Another user has an allowance of their own.
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {erin}"}
        ) as client:
            two = {"tasks": [SUBMIT["json"]] * 2}
            assert (await client.post("/api/v1/tasks:batch", json=two)).status_code == 202
            # A batch counts as many submissions as it holds tasks.
            over = await client.post("/api/v1/tasks:batch", json=two)
            assert over.status_code == 429
            assert (await client.post("/api/v1/tasks", json=SUBMIT["json"])).status_code == 202


# ---- WebSocket ----------------------------------------------------------------------------------


@pytest.fixture
async def ws_people(people: People, notifier: Notifier) -> People:
    """The people, with a notifier running."""
    return people


async def _close_code(socket: Socket) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        await socket.recv(10)
    return closed.value.rcvd.code if closed.value.rcvd else None


async def test_an_anonymous_connection_is_closed_with_4401(
    settings: Settings, ws_people: People
) -> None:
    async with ws_connect(settings, token=None) as socket:
        await socket.send({"type": "subscribe", "id": "s", "scope": "all"})
        assert await _close_code(socket) == 4401
    async with ws_connect(settings, token="tl_wrong") as socket:
        assert await _close_code(socket) == 4401


async def test_websocket_matrix_subscriptions_carry_only_what_the_user_may_see(
    settings: Settings, ws_people: People
) -> None:
    people = ws_people
    mine, theirs = await people.task(), await people.task(owner="bob")
    seen: dict[str, list[Message]] = {}
    for actor in (OWNER, OTHER, ADMIN):
        async with ws_connect(settings, token=people.tokens[actor]) as socket:
            by_id = await socket.subscribe("ids", tasks=[mine])
            everything = await socket.subscribe("all", scope="all")
            seen[actor] = by_id + everything
    errors = [m for m in seen[OTHER] if m["type"] == "error"]
    assert [e["problem"]["type"] for e in errors] == ["urn:tasklight:problem:not-found"]
    assert {t["id"] for t in tasks_of(seen[OWNER])} == {mine}
    assert {t["id"] for t in tasks_of(seen[OTHER])} == {theirs}
    assert {t["id"] for t in tasks_of(seen[ADMIN])} == {mine, theirs}


async def test_live_changes_reach_only_the_owner_and_admins(
    settings: Settings, ws_people: People
) -> None:
    people = ws_people
    mine = await people.task()
    sockets: dict[str, Socket] = {}
    async with (
        ws_connect(settings, token=people.tokens[OWNER]) as sockets[OWNER],
        ws_connect(settings, token=people.tokens[OTHER]) as sockets[OTHER],
        ws_connect(settings, token=people.tokens[ADMIN]) as sockets[ADMIN],
    ):
        for socket in sockets.values():
            await socket.subscribe("all", scope="all")
        await sockets[OTHER].subscribe("ids", tasks=[mine])  # refused: not found
        async with people.client(OWNER) as client:
            await client.post(f"/api/v1/tasks/{mine}/cancel")
        for actor in (OWNER, ADMIN):
            await sockets[actor].until(
                lambda m: m["type"] == "task" and m["task"]["state"] == "canceled"
            )
        # Both of the other user's subscriptions stay silent: a ping comes back with nothing
        # before it.
        await sockets[OTHER].send({"type": "ping", "id": "p"})
        quiet = await sockets[OTHER].until(lambda m: m["type"] == "pong")
        assert tasks_of(quiet) == []


async def test_a_ticket_authenticates_one_connection_once(
    settings: Settings, ws_people: People
) -> None:
    people = ws_people
    async with people.client(OWNER) as client:
        ticket = (await client.post("/api/v1/ws-tickets")).json()["ticket"]
    async with ws_connect(settings, token=None) as socket:
        await socket.send({"type": "auth", "ticket": ticket})
        assert await socket.recv() == {"type": "authenticated", "user": "alice", "role": "user"}
        await socket.subscribe("all", scope="all")
        await socket.send({"type": "auth", "ticket": ticket})
        again = await socket.recv()
        assert again["problem"]["type"] == "urn:tasklight:problem:already-authenticated"
    async with ws_connect(settings, token=None) as socket:
        await socket.send({"type": "auth", "ticket": ticket})  # used up
        assert await _close_code(socket) == 4401


async def test_a_token_in_an_auth_message_authenticates(
    settings: Settings, ws_people: People
) -> None:
    async with ws_connect(settings, token=None) as socket:
        await socket.send({"type": "auth", "token": ws_people.tokens[ADMIN]})
        assert (await socket.recv())["role"] == "admin"


async def test_a_connection_that_never_authenticates_is_closed(
    settings: Settings, store: Store
) -> None:
    quick = settings.model_copy(update={"ws_auth_timeout_s": 0.5})
    running = Notifier(quick)
    await running.start()
    try:
        async with ws_connect(quick, token=None) as socket:
            assert await _close_code(socket) == 4401
    finally:
        await running.stop()


async def test_the_session_cookie_authenticates_a_same_origin_socket_and_a_cross_site_handshake_is_refused(  # noqa: E501
    settings: Settings, ws_people: People
) -> None:
    async with sign_in(ws_people.base_url, "alice", "alice-password") as client:
        cookie = f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"
    url = f"ws://127.0.0.1:{settings.notifier_port}/ws"
    origin = f"http://127.0.0.1:{settings.api_port}"
    async with connect(url, additional_headers={"Cookie": cookie, "Origin": origin}) as ws:
        socket = Socket(ws)
        assert (await socket.subscribe("all", scope="all"))[-1]["type"] == "subscribed"
    # The same valid cookie, sent by a page of another site: no WebSocket at all.
    evil = {"Cookie": cookie, "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=evil):
            pass
    assert refused.value.response.status_code == 403


async def test_subscriptions_per_connection_are_limited(settings: Settings, store: Store) -> None:
    few = settings.model_copy(update={"ws_max_subscriptions": 2, "dev_mode": True})
    running = Notifier(few)
    await running.start()
    try:
        async with ws_connect(few) as socket:
            await socket.subscribe("a", scope="all")
            await socket.subscribe("b", scope="all")
            await socket.send({"type": "subscribe", "id": "c", "scope": "all"})
            refused = await socket.recv()
            assert refused["type"] == "error"
            assert refused["id"] == "c"
            assert refused["problem"]["status"] == 429
            await socket.send({"type": "unsubscribe", "id": "a"})
            assert (await socket.recv())["type"] == "unsubscribed"
            assert (await socket.subscribe("c", scope="all"))[-1]["type"] == "subscribed"
    finally:
        await running.stop()


async def test_connections_per_user_are_limited(settings: Settings, store: Store) -> None:
    few = settings.model_copy(update={"ws_max_connections_per_user": 2, "dev_mode": True})
    running = Notifier(few)
    await running.start()
    try:
        async with ws_connect(few) as first, ws_connect(few) as second:
            for socket in (first, second):
                await socket.send({"type": "ping"})
                assert (await socket.recv())["type"] == "pong"
            async with ws_connect(few) as third:
                assert await _close_code(third) == 4429
        # Closing frees the places (once the server has seen the closes).
        for _ in range(50):
            async with ws_connect(few) as again:
                await again.send({"type": "ping"})
                try:
                    if (await again.recv())["type"] == "pong":
                        break
                except ConnectionClosed:
                    await asyncio.sleep(0.1)
        else:
            raise AssertionError("no place freed after closing every connection")
    finally:
        await running.stop()


async def test_workers_show_each_user_only_the_running_tasks_they_may_see(
    people: People, worker: Any
) -> None:
    async with people.client(OWNER) as client:
        submitted = await client.post(
            "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 50, "round_s": 0.1}}
        )
        task_id = submitted.json()["id"]

    async def running_for(actor: str) -> set[str]:
        async with people.client(actor) as client:
            listed = (await client.get("/api/v1/workers")).json()
        return {t for w in listed for t in w["tasks"]}

    for _ in range(100):
        if task_id in await running_for(ADMIN):
            break
        await asyncio.sleep(0.1)
    assert task_id in await running_for(OWNER)
    assert task_id not in await running_for(OTHER)
    async with people.client(OWNER) as client:
        await client.post(f"/api/v1/tasks/{task_id}/cancel")


async def test_workers_show_a_user_only_theirs_and_an_admin_the_process_and_host(
    people: People, worker: Any
) -> None:
    import os
    import socket

    async with people.client(OWNER) as client:
        submitted = await client.post(
            "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 50, "round_s": 0.1}}
        )
        task_id = submitted.json()["id"]

    async def listed(actor: str) -> list[dict[str, Any]]:
        async with people.client(actor) as client:
            answer: list[dict[str, Any]] = (await client.get("/api/v1/workers")).json()
        return answer

    for _ in range(100):
        if any(task_id in w["tasks"] for w in await listed(ADMIN)):
            break
        await asyncio.sleep(0.1)
    (seen_by_admin,) = [w for w in await listed(ADMIN) if task_id in w["tasks"]]
    assert (seen_by_admin["pid"], seen_by_admin["host"]) == (os.getpid(), socket.gethostname())
    assert seen_by_admin["concurrency"] is not None
    (seen_by_owner,) = await listed(OWNER)
    assert seen_by_owner["tasks"] == [task_id]
    assert {k for k, v in seen_by_owner.items() if v is not None} == {
        "name",
        "last_heartbeat",
        "missing",
        "tasks",
    }
    assert await listed(OTHER) == []  # no worker runs a task of theirs
    async with people.client(OWNER) as client:
        await client.post(f"/api/v1/tasks/{task_id}/cancel")


async def test_repeated_wrong_passwords_block_sign_in_for_that_name_only(
    settings: Settings, store: Store
) -> None:
    strict = settings.model_copy(update={"max_failed_logins": 3})
    auth = AuthStore(store.accounts)
    await auth.create_user("frank", Role.USER, password="frank-password")
    await auth.create_user("gina", Role.USER, password="gina-password")
    token = await auth.issue_token("frank")
    base_url = f"http://127.0.0.1:{strict.api_port}"

    async def attempt(username: str, password: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=base_url) as client:
            body = {"username": username, "password": password}
            return await client.post("/api/v1/session", json=body)

    async with ServerThread(create_app(strict), strict.api_port):
        assert (await attempt("frank", "frank-password")).status_code == 200
        for _ in range(3):
            assert (await attempt("frank", "guess")).status_code == 401
        blocked = await attempt("frank", "frank-password")  # even the right one, for now
        assert blocked.status_code == 429
        assert blocked.json()["type"] == "urn:tasklight:problem:too-many-failed-sign-ins"
        assert 1 <= int(blocked.headers["Retry-After"]) <= 900
        # Another name, and frank's API token, are not affected.
        assert (await attempt("gina", "gina-password")).status_code == 200
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            assert (await client.get("/api/v1/tasks")).status_code == 200


@pytest.mark.parametrize(
    "message",
    [
        {"type": "subscribe", "id": "s", "scope": "all"},
        {"type": "subscribe", "id": "s", "tasks": ["01900000-0000-7000-8000-000000000000"]},
        {"type": "unsubscribe", "id": "s"},
        {"type": "ping", "id": "p"},
        {"type": "auth", "token": "tl_not-a-token"},
        {"type": "auth", "ticket": "not-a-ticket"},
    ],
    ids=lambda m: f"{m['type']}-{'/'.join(k for k in m if k not in ('type', 'id'))}",
)
async def test_websocket_matrix_anonymous_gets_4401_for_every_action(
    settings: Settings, ws_people: People, message: Message
) -> None:
    async with ws_connect(settings, token=None) as socket:
        await socket.send(message)
        assert await _close_code(socket) == 4401


@pytest.mark.parametrize("actor", [OWNER, OTHER, ADMIN])
async def test_websocket_matrix_every_user_may_ping_and_unsubscribe(
    settings: Settings, ws_people: People, actor: str
) -> None:
    async with ws_connect(settings, token=ws_people.tokens[actor]) as socket:
        await socket.send({"type": "ping", "id": "p"})
        assert await socket.recv() == {"type": "pong", "id": "p"}
        await socket.subscribe("s", scope="all")
        await socket.send({"type": "unsubscribe", "id": "s"})
        assert await socket.recv() == {"type": "unsubscribed", "id": "s"}


# ---- sign-in under attack ------------------------------------------------------------------


async def _sign_in(base_url: str, username: str, password: str, **headers: str) -> httpx.Response:
    # Sign-ins that wait for a password check may wait several checks' time on a loaded
    # machine; what these tests judge is the answer, not how soon it came.
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        return await client.post(
            "/api/v1/session", json={"username": username, "password": password}
        )


async def test_wrong_passwords_sent_at_once_for_one_name_are_held_to_the_limit(
    settings: Settings, store: Store
) -> None:
    """Each attempt is counted before its password is checked: twenty guesses sent together
    get as many checks as three sent one after another."""
    strict = settings.model_copy(update={"max_failed_logins": 3})
    await AuthStore(store.accounts).create_user("frank", Role.USER, password="frank-password")
    base_url = f"http://127.0.0.1:{strict.api_port}"
    async with ServerThread(create_app(strict), strict.api_port):
        answers = await asyncio.gather(
            *(_sign_in(base_url, "frank", f"guess-{i}") for i in range(20))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [401] * 3 + [429] * 17, statuses


async def test_failed_sign_ins_from_one_address_are_limited_whatever_the_names(
    settings: Settings, store: Store
) -> None:
    """Random names avoid the limit per name; the one per address catches them, and the
    client's own X-Forwarded-For does not change its address (no proxy is trusted)."""
    strict = settings.model_copy(update={"max_failed_logins_per_address": 5})
    await AuthStore(store.accounts).create_user("gina", Role.USER, password="gina-password")
    base_url = f"http://127.0.0.1:{strict.api_port}"
    async with ServerThread(create_app(strict), strict.api_port):
        statuses = [
            (
                await _sign_in(
                    base_url, f"random-{i}", "guess", **{"X-Forwarded-For": f"198.51.100.{i}"}
                )
            ).status_code
            for i in range(7)
        ]
        blocked = await _sign_in(base_url, "gina", "gina-password")
    assert statuses == [401] * 5 + [429] * 2
    assert blocked.status_code == 429
    assert blocked.json()["type"] == "urn:tasklight:problem:too-many-failed-sign-ins"


async def test_behind_a_trusted_proxy_the_forwarded_client_address_is_the_one_counted(
    settings: Settings, store: Store
) -> None:
    proxied = settings.model_copy(
        update={"max_failed_logins_per_address": 2, "trusted_proxies": "127.0.0.1"}
    )
    await AuthStore(store.accounts).create_user("hana", Role.USER, password="hana-password")
    base_url = f"http://127.0.0.1:{proxied.api_port}"
    one, two = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    async with ServerThread(create_app(proxied), proxied.api_port):
        first = [(await _sign_in(base_url, f"n{i}", "guess", **one)).status_code for i in range(3)]
        other = await _sign_in(base_url, "hana", "hana-password", **two)
    assert first == [401, 401, 429]
    assert other.status_code == 200


@pytest.fixture
def slow_checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Password checks that take 0.1 s longer, recording their threads and most at once."""
    import threading
    import time

    from shared import auth as auth_module

    real = auth_module.check_password
    lock = threading.Lock()
    seen: dict[str, Any] = {"threads": set(), "running": 0, "most": 0}

    def check(password: str, stored: str) -> bool:
        with lock:
            seen["threads"].add(threading.get_ident())
            seen["running"] += 1
            seen["most"] = max(seen["most"], seen["running"])
        try:
            time.sleep(0.1)
            return real(password, stored)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(auth_module, "check_password", check)
    return seen


async def test_password_checks_run_off_the_event_loop_a_bounded_number_at_once(
    settings: Settings, store: Store, slow_checks: dict[str, Any]
) -> None:
    import threading

    bounded = settings.model_copy(update={"password_checks_at_once": 2})
    await AuthStore(store.accounts).create_user("ivan", Role.USER, password="ivan-password")
    base_url = f"http://127.0.0.1:{bounded.api_port}"
    async with ServerThread(create_app(bounded), bounded.api_port):
        answers = await asyncio.gather(
            _sign_in(base_url, "ivan", "ivan-password"),
            *(_sign_in(base_url, f"nobody-{i}", "guess") for i in range(7)),
        )
    assert [a.status_code for a in answers] == [200] + [401] * 7
    assert threading.get_ident() not in slow_checks["threads"]  # never on the event loop
    assert slow_checks["most"] == 2


async def test_sign_ins_beyond_what_may_wait_get_503_and_are_not_counted_as_failures(
    settings: Settings, store: Store, slow_checks: dict[str, Any]
) -> None:
    one_at_a_time = settings.model_copy(
        update={"password_checks_at_once": 1, "max_failed_logins": 100}
    )
    await AuthStore(store.accounts).create_user("jane", Role.USER, password="jane-password")
    base_url = f"http://127.0.0.1:{one_at_a_time.api_port}"
    async with ServerThread(create_app(one_at_a_time), one_at_a_time.api_port):
        answers = await asyncio.gather(*(_sign_in(base_url, "jane", "guess") for _ in range(30)))
    busy = [a for a in answers if a.status_code == 503]
    checked = [a for a in answers if a.status_code == 401]
    assert len(busy) + len(checked) == 30
    assert busy, "every sign-in waited"
    assert busy[0].json()["type"] == "urn:tasklight:problem:sign-in-busy"
    assert busy[0].headers["Retry-After"] == "1"
    counter = await store.db["failed_logins"].find_one({"_id": "name:jane"})
    assert counter is not None
    assert counter["count"] == len(checked)
