"""What the notifier benchmarks run against: an embedded SecantusDB and a notifier process."""

from __future__ import annotations

import asyncio
import os
import platform
import resource
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.stack import EmbeddedMongo, free_port, start_service, wait_for_port
from shared.auth import AuthStore, Role
from shared.settings import Settings
from shared.store import Store, open_store


@dataclass
class NotifierEnv:
    """A running notifier process and a store on its database."""

    settings: Settings
    store: Store
    notifier: subprocess.Popen[bytes]
    #: The handshake header of the benchmark's user (`BENCH_USER`).
    headers: dict[str, str]

    @property
    def ws_url(self) -> str:
        """Where subscribers connect."""
        return f"ws://127.0.0.1:{self.settings.notifier_port}/ws"

    def notifier_rss_bytes(self) -> int:
        """Resident memory of the notifier process."""
        return rss_bytes(self.notifier.pid)

    def notifier_cpu_s(self) -> float:
        """CPU time the notifier process has used so far, all its threads, to the nanosecond
        (what it costs, whatever else the machine runs meanwhile)."""
        tasks = Path(f"/proc/{self.notifier.pid}/task")
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9


#: The user the benchmarks act as: a real one, with an API token, as in production.
BENCH_USER = "bench"


async def bench_token(store: Store) -> str:
    """Create `BENCH_USER` in the store's database; a new API token of theirs."""
    auth = AuthStore(store.accounts)
    await auth.create_user(BENCH_USER, Role.USER)
    return await auth.issue_token(BENCH_USER)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version()}


@asynccontextmanager
async def notifier_env(**settings: Any) -> AsyncIterator[NotifierEnv]:
    """An embedded SecantusDB (--sync-on-commit) and a notifier process following it."""
    with tempfile.TemporaryDirectory(prefix="tasklight-bench-") as tmp:
        mongo = EmbeddedMongo(Path(tmp) / "secantus", log_path=Path(tmp) / "secantus.log")
        await asyncio.to_thread(mongo.start)
        config = Settings(
            mongodb_url=mongo.url,
            database="bench",
            notifier_port=free_port(),
            notifier_metrics_port=free_port(),
            **settings,
        )
        env = {
            **os.environ,
            "MONGODB_URL": config.mongodb_url,
            "TASKLIGHT_DATABASE": config.database,
            "TASKLIGHT_NOTIFIER_PORT": str(config.notifier_port),
            "TASKLIGHT_NOTIFIER_METRICS_PORT": str(config.notifier_metrics_port),
            "TASKLIGHT_LOG_LEVEL": "WARNING",
            # Thousands of subscribers, all of one benchmark user.
            "TASKLIGHT_WS_MAX_CONNECTIONS_PER_USER": "100000",
        }
        for key, value in settings.items():
            env[f"TASKLIGHT_{key.upper()}"] = str(value)
        store = open_store(config)
        await store.migrate()
        token = await bench_token(store)
        notifier = start_service("notifier", env, Path(tmp))
        try:
            await asyncio.to_thread(wait_for_port, "127.0.0.1", config.notifier_port, 30, notifier)
            yield NotifierEnv(config, store, notifier, {"Authorization": f"Bearer {token}"})
        finally:
            await store.close()
            notifier.terminate()
            try:
                await asyncio.to_thread(notifier.wait, 30)
            except subprocess.TimeoutExpired:
                notifier.kill()
            await asyncio.to_thread(mongo.stop)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]
