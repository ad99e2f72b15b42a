"""`python -m services.stack` (what `make run` runs), stopped and started as a person would."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import ROOT, free_port
from services.worker.app import Worker
from shared.settings import Settings
from shared.store import Store
from tests.support import eventually
from tests.support.processes import service_env, until_listening
from tests.support.servers import DEV_AUTH

pytestmark = pytest.mark.e2e


def launcher(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`python -m services.stack` with `env`, its output to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.stack"],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


@contextlib.contextmanager
def listener() -> Iterator[tuple[int, list[object]]]:
    """Something else listening on a port: the port, and every connection it was offered."""
    accepted: list[object] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        done.set()
        thread.join()
        server.close()


async def test_a_database_port_already_taken_stops_the_launcher_before_anything_connects(
    tmp_path: Path, settings: Settings
) -> None:
    with listener() as (port, accepted):
        env = {
            **service_env(settings),
            "TASKLIGHT_EMBEDDED_MONGO_PORT": str(port),
            "TASKLIGHT_API_METRICS_PORT": str(free_port()),
        }
        env.pop("MONGODB_URL")
        process = launcher(env, tmp_path / "stack.log")
        try:
            returncode = await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        output = (tmp_path / "stack.log").read_text()
    assert returncode == 1, output
    assert f"port {port} is already in use" in output
    assert "TASKLIGHT_EMBEDDED_MONGO_PORT" in output
    assert accepted == [], "the launcher connected to whatever listened there"


async def read(api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(f"/api/v1/tasks/{task_id}")).json()
    return body


async def test_stopping_the_launcher_hands_a_running_task_back_and_the_next_worker_runs_it(
    tmp_path: Path, settings: Settings, store: Store
) -> None:
    env = {**service_env(settings), "TASKLIGHT_SHUTDOWN_GRACE_S": "1", "TASKLIGHT_WORKER_PORT": "0"}
    log = tmp_path / "stack.log"
    process = launcher(env, log)
    base_url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await until_listening(process, settings.api_port, 60)
        await until_listening(process, settings.notifier_port, 60)
        async with httpx.AsyncClient(base_url=base_url, headers=DEV_AUTH) as api:
            submitted = await api.post(
                "/api/v1/tasks", json={"name": "test.count", "args": {"rounds": 40, "round_s": 0.1}}
            )
            assert submitted.status_code == 202, submitted.text
            task_id = submitted.json()["id"]
            await eventually(
                lambda: read(api, task_id), lambda t: t["state"] == "running", timeout_s=30
            )
        # Ctrl-C
        process.send_signal(signal.SIGINT)
        returncode = await asyncio.wait_for(asyncio.to_thread(process.wait), 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert returncode == 0, output
    assert "waiting up to" in output, output
    assert "hand them back" in output, output
    assert "killing" not in output, output
    handed = await store.tasks.get(task_id)
    assert handed is not None
    assert handed.state == "running", handed
    assert [a.outcome for a in handed.attempts] == ["hand_back"]

    # The next worker (the next `make run`) takes it from the queue at once.
    next_worker = Worker(settings.model_copy(update={"worker_name": "next"}))
    await next_worker.start()
    try:
        taken = await eventually(
            lambda: store.tasks.get(task_id),
            lambda t: t is not None and t.worker is not None and t.worker.name == "next",
            timeout_s=5,
        )
    finally:
        await next_worker.stop(grace_s=0)
    assert taken is not None
    assert taken.runs == 2
