"""Servers and clean-up the tests share: the development user's header, an ASGI app served on
the test's loop, a test's namespace dropped."""

from __future__ import annotations

import asyncio

import uvicorn

from shared.auth import DEV_TOKEN
from shared.broker import delete_topology
from shared.settings import Settings
from shared.store import open_store
from shared.topology import Topology
from tests.support.skip_policy import (  # noqa: F401  (hooks: a skipped test fails the run)
    pytest_configure,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)

#: The header that authenticates as the development user (tests run in development mode).
DEV_AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


async def drop_namespace(settings: Settings) -> None:
    """Delete a test's database, queues and exchanges."""
    store = open_store(settings)
    try:
        await store.client.drop_database(settings.database)
    finally:
        await store.close()
    await delete_topology(settings.amqp_url, Topology(settings.namespace))


class ServerThread:
    """A uvicorn server for an ASGI app, run as a task on the test's event loop."""

    def __init__(self, app: object, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,  # type: ignore[arg-type]
                host="127.0.0.1",
                port=port,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=5,
                # As `python -m services.api` runs it: the app decides whose X-Forwarded-* to
                # believe (TASKLIGHT_TRUSTED_PROXIES), not uvicorn.
                proxy_headers=False,
            )
        )
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServerThread:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            await self.task
