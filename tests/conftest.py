"""Fixtures shared by every test layer; backends are found as `tests/support/backends.py` says."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.api.app import create_app
from services.stack import EmbeddedMongo, free_port
from services.worker.app import Worker
from shared import tracing
from shared.migrate import migrate
from shared.settings import Settings
from shared.store import Store, open_store
from tests.support.backends import amqp_backend, mongo_backend
from tests.support.servers import DEV_AUTH, ServerThread, drop_namespace
from tests.support.skip_policy import (  # noqa: F401  (hooks: a skipped test fails the run)
    pytest_configure,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)


@pytest.fixture(scope="session")
def mongo_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, EmbeddedMongo | None]]:
    """The session's MongoDB URL, and the embedded server if the tests started it."""
    with mongo_backend(tmp_path_factory.mktemp("mongo")) as backend:
        yield backend


@pytest.fixture(scope="session")
def mongo_url(mongo_server: tuple[str, EmbeddedMongo | None]) -> str:
    """The session's MongoDB URL."""
    return mongo_server[0]


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """The session's AMQP URL."""
    with amqp_backend() as url:
        yield url


@pytest.fixture
async def settings(mongo_url: str, amqp_url: str) -> AsyncIterator[Settings]:
    """Settings with a database and broker namespace of this test's own; both removed after it."""
    unique = uuid.uuid4().hex[:12]
    test_settings = Settings(
        mongodb_url=mongo_url,
        amqp_url=amqp_url,
        database=f"test_{unique}",
        namespace=f"test.{unique}",
        api_port=free_port(),
        api_metrics_port=free_port(),
        notifier_port=free_port(),
        notifier_metrics_port=free_port(),
        worker_port=0,  # several workers may run at once: each probe server on a free port
        lease_renew_s=0.5,
        worker_name=f"test-worker-{unique}",
        # Most tests act as the built-in development user; tests/integration/test_auth.py
        # checks real users, and that none of this is accepted outside development mode.
        dev_mode=True,
        builtin_tasks=True,
    )
    # As `make run` and a deployment do: migrate first; the services only check the schema.
    await migrate(test_settings)
    yield test_settings
    await drop_namespace(test_settings)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """A store on the test's (migrated) database."""
    test_store = open_store(settings)
    yield test_store
    await test_store.close()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the API, served by uvicorn on a free port."""
    base_url = f"http://127.0.0.1:{settings.api_port}"
    async with (
        ServerThread(create_app(settings), settings.api_port),
        httpx.AsyncClient(base_url=base_url, headers=DEV_AUTH) as client,
    ):
        yield client


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    """A worker consuming the test's queue."""
    running = Worker(settings)
    await running.start()
    yield running
    # Bounded: a teardown that cannot finish must fail the test, not hang the suite.
    await asyncio.wait_for(running.stop(), timeout=60)


@pytest.fixture
def artifacts_dir() -> Path:
    """Where tests leave files worth keeping (screenshots); kept out of git."""
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


from services.notifier.app import Notifier  # noqa: E402  (appended with its fixture)


@pytest.fixture
async def notifier(settings: Settings) -> AsyncIterator[Notifier]:
    """A notifier serving the test's database at `settings.notifier_port`, on the test's loop."""
    running = Notifier(settings)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    yield exporter
    tracing.uninstall()
    provider.shutdown()
