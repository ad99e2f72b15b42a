"""The services as `python -m services.<name>` processes, for the tests that need real ones."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from services.stack import start_replicas, stop_processes, wait_for_port
from shared.auth import DEV_TOKEN
from shared.settings import Settings
from shared.store import Store

#: The services a task needs: what the test stacks start.
TASK_SERVICES = ("api", "worker", "notifier")


def service_env(settings: Settings) -> dict[str, str]:
    """The test's settings as the environment variables the services read."""
    return {
        **os.environ,
        "MONGODB_URL": settings.mongodb_url,
        "AMQP_URL": settings.amqp_url,
        "TASKLIGHT_DATABASE": settings.database,
        "TASKLIGHT_NAMESPACE": settings.namespace,
        "TASKLIGHT_API_PORT": str(settings.api_port),
        "TASKLIGHT_API_METRICS_PORT": str(settings.api_metrics_port),
        "TASKLIGHT_NOTIFIER_PORT": str(settings.notifier_port),
        "TASKLIGHT_NOTIFIER_METRICS_PORT": str(settings.notifier_metrics_port),
        "TASKLIGHT_WORKER_NAME": settings.worker_name,
        "TASKLIGHT_LEASE_RENEW_S": "0.5",
        # Several stacks may run on one machine: the sender's probes on a free port.
        "TASKLIGHT_WEBHOOKS_PORT": "0",
        "TASKLIGHT_DEV_MODE": "true",
        "TASKLIGHT_BUILTIN_TASKS": "true",
        "TASKLIGHT_TOKEN": DEV_TOKEN,
        # A revoked token is refused at once (test_auth.py covers the cache).
        "TASKLIGHT_TOKEN_CACHE_S": "0",
        "TASKLIGHT_API_URL": f"http://127.0.0.1:{settings.api_port}",
        "TASKLIGHT_WS_URL": f"ws://127.0.0.1:{settings.notifier_port}/ws",
    }


def log_tail(log_dir: Path, name: str, lines: int = 40) -> str:
    """The last `lines` of the log a process named `name` wrote in `log_dir` (by `start_service`'s
    naming: `<name>.log`, or `worker-<n>.log` for a replica), for a failure message that shows why
    it stopped even where the log directory is gone by the time someone reads the report."""
    candidates = [log_dir / f"{name}.log", *sorted(log_dir.glob("worker*.log"))]
    for path in candidates:
        if path.exists():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            return f"{path.name}:\n" + "\n".join(text)
    return f"(no log in {log_dir})"


async def until_listening(
    process: subprocess.Popen[bytes], port: int, timeout_s: float = 60
) -> None:
    """Wait until `process` listens on `port` of 127.0.0.1; fail if it exits first."""
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port, timeout_s, process)


async def until_workers_beat(
    store: Store,
    workers: Mapping[str, subprocess.Popen[bytes]],
    log_dir: Path,
    timeout_s: float = 60,
) -> None:
    """Wait until each worker (by name) has recorded a heartbeat: it consumes by then."""
    wanted = set(workers)
    deadline = time.monotonic() + timeout_s
    while True:
        beating = {
            w["_id"] async for w in store.workers.collection.find({"_id": {"$in": list(wanted)}})
        }
        if beating == wanted:
            return
        for name in wanted - beating:
            exited = workers[name].poll()
            assert exited is None, (
                f"worker {name} exited with {exited}; its log ends:\n{log_tail(log_dir, name)}"
            )
        assert time.monotonic() < deadline, f"workers {wanted - beating} never beat"
        await asyncio.sleep(0.1)


async def start_stack(
    env: dict[str, str], settings: Settings, log_dir: Path
) -> dict[str, subprocess.Popen[bytes]]:
    """An api, a worker and a notifier on `env`, once the api and the notifier listen (at
    `settings`' ports); stop them with `stop_processes`. No webhook sender: the tests that need
    one start it (on a busy machine every process more slows the others' start)."""
    processes = start_replicas(
        env, [(settings.api_port, settings.notifier_port)], log_dir, services=TASK_SERVICES
    )
    try:
        await until_listening(processes["api"], settings.api_port)
        await until_listening(processes["notifier"], settings.notifier_port)
    except BaseException:
        await asyncio.to_thread(stop_processes, processes.values())
        raise
    return processes
