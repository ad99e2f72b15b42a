"""Fault-test fixtures: the services as processes on quick timeouts, and the invariant they keep.

Every fault test ends with `assert_nothing_lost_or_doubled`: each task that got a 202 is in a
final state with exactly one final event, was claimed from `waiting` exactly once, ran once plus
once per requeue, and nothing is left pending or waiting in the outbox.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.stack import EmbeddedMongo
from shared.migrate import migrate
from shared.settings import Settings
from shared.store import Store, open_store
from tests.support.cluster import RabbitCluster, cluster_directory, scripts_dir
from tests.support.faults import (
    CLUSTER_ENV,
    FIGURES,
    Services,
    _shown,
    report_figures,
    unavailable_in_ci,
)
from tests.support.servers import DEV_AUTH, drop_namespace


@pytest.fixture
def own_mongo(
    tmp_path: Path, mongo_server: tuple[str, EmbeddedMongo | None]
) -> Iterator[EmbeddedMongo | None]:
    """A database server of this test alone, on a fixed data dir, when the session's is
    embedded: a fault test may stop it, or wedge it, without harming the tests after it."""
    if mongo_server[1] is None:
        yield None
        return
    server = EmbeddedMongo(tmp_path / "own-mongo", log_path=tmp_path / "own-mongo.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def fault_settings(settings: Settings, own_mongo: EmbeddedMongo | None) -> Settings:
    """The test's settings, on its own (migrated) database server if it has one."""
    if own_mongo is None:
        return settings
    own = settings.model_copy(update={"mongodb_url": own_mongo.url})
    await migrate(own)
    return own


@pytest.fixture
async def services(fault_settings: Settings, tmp_path: Path) -> AsyncIterator[Services]:
    """The test's services (none started yet); all stopped after the test."""
    running = Services(fault_settings, tmp_path)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop_all)


@pytest.fixture
async def http(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the test's api process."""
    async with httpx.AsyncClient(
        base_url=services.base_url, timeout=30, headers=DEV_AUTH
    ) as client:
        yield client


@pytest.fixture
async def fault_store(fault_settings: Settings) -> AsyncIterator[Store]:
    """A store on the test's database, for reading what the services recorded."""
    task_store = open_store(fault_settings)
    yield task_store
    await task_store.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The session's fault figures, one line per test."""
    if not FIGURES:
        return
    terminalreporter.section("fault figures")
    for test, figures in FIGURES:
        line = " ".join(f"{key}={_shown(value)}" for key, value in figures.items())
        terminalreporter.write_line(f"{test}: {line}")


@pytest.fixture(scope="session")
def rabbit_cluster() -> Iterator[RabbitCluster]:
    """Three RabbitMQ nodes in one cluster (tests/support/cluster.py), for the session; each
    test that harms a node leaves all three running again."""
    if scripts_dir() is None:
        unavailable_in_ci("rabbitmq-server is not installed: cannot start a RabbitMQ cluster")
    cluster = RabbitCluster(cluster_directory())
    try:
        started_s = cluster.start()
    except BaseException:
        cluster.stop()
        raise
    report_figures("rabbitmq cluster", nodes=cluster.size, started_in_s=started_s)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def cluster_settings(
    fault_settings: Settings, rabbit_cluster: RabbitCluster
) -> AsyncIterator[Settings]:
    """The test's settings on the cluster (every node's address), with its own namespace there."""
    on_cluster = fault_settings.model_copy(
        update={"amqp_url": rabbit_cluster.amqp_url, "quorum_group_size": 3, "amqp_heartbeat_s": 2}
    )
    yield on_cluster
    await drop_namespace(on_cluster)


@pytest.fixture
async def cluster_services(cluster_settings: Settings, tmp_path: Path) -> AsyncIterator[Services]:
    """The test's services on the cluster (none started yet); all stopped after the test."""
    running = Services(cluster_settings, tmp_path)
    running.env.update(CLUSTER_ENV)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop_all)
