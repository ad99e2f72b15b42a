"""The API's composition root: settings → clients → app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from services.api import api_docs, meta, observability, session, tasks, ui, webhooks, webhooks_page
from services.api.body_limit import BodyLimitMiddleware
from services.api.headers import SecurityHeadersMiddleware
from services.api.json_body import JsonBodyMiddleware
from services.api.problems import install_problem_handlers, problem_response
from services.api.runtime import Runtime
from shared import metrics
from shared.auth import DEV_USER, AuthStore
from shared.broker import declare_topology, make_broker
from shared.commands import Commands
from shared.probes import ProbeServer
from shared.rate_limit import RateLimiter
from shared.registry import Registry, load_registry
from shared.runs import Runs
from shared.settings import Settings
from shared.store import DatabaseUnreachable, Store, open_store
from shared.submission import Submissions
from shared.topology import Topology

log = logging.getLogger(__name__)


def open_auth(store: Store, settings: Settings) -> AuthStore:
    """The credentials store, in the tasks' database."""
    return AuthStore(
        store.accounts,
        dev_mode=settings.dev_mode,
        session_ttl_s=settings.session_ttl_s,
        ticket_ttl_s=settings.ws_ticket_ttl_s,
        max_failed_logins=settings.max_failed_logins,
        max_failed_logins_per_address=settings.max_failed_logins_per_address,
        password_checks_at_once=settings.password_checks_at_once,
        token_cache_s=settings.token_cache_s,
    )


async def _first_admin(auth: AuthStore, settings: Settings) -> None:
    if settings.dev_mode:
        log.warning(
            "DEVELOPMENT MODE: the built-in user %r and its password and token are accepted; "
            "never run a deployment like this",
            DEV_USER,
        )
    if not settings.admin_user:
        return
    created = await auth.ensure_admin(
        settings.admin_user,
        password=settings.admin_password or None,
        token=settings.admin_token or None,
    )
    if created:
        log.info("created the administrator %r", settings.admin_user)


async def _start_probes(probes: ProbeServer) -> None:
    # Not fatal, as for a worker: the api serves its users without its metrics port.
    try:
        await probes.start()
    except OSError as exc:
        log.error(
            "api metrics not served: cannot listen on %s:%d (%s); set TASKLIGHT_API_METRICS_PORT",
            probes.host,
            probes.port,
            exc,
        )


class _App(FastAPI):
    """FastAPI with the security headers as its outermost layer.

    Starlette puts its own `ServerErrorMiddleware` outside every middleware added with
    `add_middleware`, and that is where the answer to an unexpected exception (a 500) is made:
    a headers middleware added the usual way never sees it. Wrapping the whole stack gives
    every answer the headers, 500s included.
    """

    def build_middleware_stack(self) -> ASGIApp:
        return SecurityHeadersMiddleware(super().build_middleware_stack())


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The API app; it connects to the database and the broker when it starts."""
    settings = settings or Settings()
    registry = registry or load_registry(
        settings.task_modules, builtin_tasks=settings.builtin_tasks
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        auth = open_auth(store, settings)
        broker = make_broker(settings, logger=None)
        probes = ProbeServer(
            settings.api_host,
            settings.api_metrics_port,
            {"database": store.ping, "broker": lambda: broker.ping(timeout=2.0)},
            registry=metrics.API_REGISTRY,
            service="api",
        )
        app.state.probes = probes
        submissions: Submissions | None = None
        try:
            await _start_probes(probes)
            await store.require_schema()
            await _first_admin(auth, settings)
            await broker.connect()
            topology = Topology(settings.namespace)
            await declare_topology(broker, topology, settings)
            commands = Commands(broker, store.tasks, topology, timeout_s=settings.publish_timeout_s)
            limiter = RateLimiter(store.rates, settings.submit_rate_per_minute)
            submissions = Submissions(
                store.tasks, store.idempotency, commands, registry, settings, limiter
            )
            app.state.runtime = Runtime(
                settings,
                store,
                broker,
                submissions,
                Runs(store.tasks, commands, outbox_grace_s=settings.outbox_grace_s),
                registry,
                auth,
            )
            yield
        finally:
            await probes.stop()
            auth.password_checks.close()
            if submissions is not None:
                await submissions.close()
            await broker.stop()
            await store.close()

    app = _App(
        title="tasklight",
        version="0.1.0",
        summary="Background tasks with live status pushed to the browser.",
        lifespan=lifespan,
        # Served by api_docs from local assets instead of FastAPI's CDN pages.
        docs_url=None,
        redoc_url=None,
        # A slash redirect would be built from the Host header (an open redirect).
        redirect_slashes=False,
    )
    # Added innermost first: the size limit reads the body before the JSON rule parses it.
    # The security headers wrap all of it (`_App`).
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_problem_handlers(app)

    @app.exception_handler(DatabaseUnreachable)
    async def on_database_down(request: Request, exc: DatabaseUnreachable) -> JSONResponse:
        log.warning("database unavailable: %r", exc)
        return problem_response(
            "urn:tasklight:problem:unavailable",
            "the database is unavailable; retry later",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    app.include_router(session.router)
    app.include_router(tasks.router)
    app.include_router(webhooks.router)
    app.include_router(meta.router)
    api_docs.install(app)
    ui.install(app, settings, registry)
    app.include_router(webhooks_page.router)
    observability.install(app)
    if settings.trusted_proxies:
        # Outermost: who the client is and which scheme it used, as the trusted proxy says.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    return app
