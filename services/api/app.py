"""The API's composition root: settings → clients → app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure

from services.api import meta, tasks, ui
from services.api.body_limit import BodyLimitMiddleware
from services.api.problems import install_problem_handlers, problem_response
from services.api.runtime import Runtime
from shared.broker import declare_topology, make_broker
from shared.registry import Registry, load_registry
from shared.service import TaskService
from shared.settings import Settings
from shared.store import open_store
from shared.topology import Topology

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> FastAPI:
    """The API app; it connects to the database and the broker when it starts."""
    settings = settings or Settings()
    registry = registry or load_registry(settings.task_modules)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings)
        broker = make_broker(settings, logger=None)
        try:
            await store.ensure_indexes()
            await broker.connect()
            await declare_topology(broker, Topology(settings.namespace), settings)
            service = TaskService(store, broker, registry, settings)
            app.state.runtime = Runtime(settings, store, service, registry)
            yield
        finally:
            await broker.stop()
            await store.close()

    app = FastAPI(
        title="tasklight",
        version="0.1.0",
        summary="Background tasks with live status pushed to the browser.",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_problem_handlers(app)

    @app.exception_handler(ConnectionFailure)
    async def on_database_down(request: Request, exc: ConnectionFailure) -> JSONResponse:
        log.warning("database unavailable: %r", exc)
        return problem_response(
            "urn:tasklight:problem:unavailable",
            "the database is unavailable; retry later",
            instance=request.url.path,
            headers={"Retry-After": "5"},
        )

    app.include_router(tasks.router)
    app.include_router(meta.router)
    ui.install(app, settings)
    return app
