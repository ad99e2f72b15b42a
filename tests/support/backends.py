"""Where the tests find their RabbitMQ and MongoDB-wire server.

In this order: an environment variable (`AMQP_URL`, `MONGODB_URL`); the embedded one (a SecantusDB
started for the session; the local RabbitMQ); testcontainers, where a Docker engine answers. With
none, a test that needs the backend is skipped on a laptop and fails under CI (`CI` set).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from services.stack import EmbeddedMongo, reachable

LOCAL_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


def unavailable(what: str) -> None:
    """Skip (or, under CI, fail) for want of a backend."""
    message = f"no {what} reachable: set its URL variable, run it locally, or run a Docker engine"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def docker_answers() -> bool:
    """Whether a Docker engine (not only the client) is there."""
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextmanager
def mongo_backend(tmp: Path) -> Iterator[tuple[str, EmbeddedMongo | None]]:
    """A MongoDB URL for the session, and the embedded server when the tests own it."""
    if url := os.environ.get("MONGODB_URL"):
        yield url, None
        return
    server = EmbeddedMongo(tmp / "secantus", log_path=tmp / "secantus.log")
    try:
        server.start()
        started = True
    except RuntimeError:  # secantusd-py is not installed
        started = False
    if started:
        try:
            yield server.url, server
        finally:
            server.stop()
        return
    if docker_answers():
        from testcontainers.mongodb import MongoDbContainer

        with ExitStack() as stack:
            container = stack.enter_context(MongoDbContainer("mongo:8"))
            yield container.get_connection_url(), None
        return
    unavailable("MongoDB-wire server")


@contextmanager
def amqp_backend() -> Iterator[str]:
    """An AMQP URL for the session."""
    if url := os.environ.get("AMQP_URL"):
        yield url
        return
    if reachable(LOCAL_AMQP_URL, 5672):
        yield LOCAL_AMQP_URL
        return
    if docker_answers():
        from testcontainers.rabbitmq import RabbitMqContainer

        with RabbitMqContainer("rabbitmq:4-management") as container:
            params = container.get_connection_params()
            yield f"amqp://guest:guest@{params.host}:{params.port}/"
        return
    unavailable("RabbitMQ")
