"""Each service, started as a process on a database nobody migrated, exits and says to migrate."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from services.stack import start_service, stop_processes
from shared.settings import Settings
from shared.store import SchemaOutdated, open_store
from tests.support.processes import TASK_SERVICES, service_env

pytestmark = pytest.mark.e2e

#: Seconds a service may take to start, find the schema missing and exit, on a busy machine.
EXIT_TIMEOUT_S = 60.0


async def test_every_service_refuses_to_start_on_an_unmigrated_database(
    settings: Settings, tmp_path: Path
) -> None:
    # The fixture migrated the test's own database; this one nobody has.
    fresh = settings.model_copy(update={"database": f"{settings.database}_unmigrated"})
    env = {**service_env(fresh), "TASKLIGHT_WORKER_PORT": "0"}
    processes = {name: start_service(name, env, tmp_path) for name in TASK_SERVICES}
    store = open_store(fresh)
    try:
        for name, process in processes.items():
            try:
                code = await asyncio.to_thread(process.wait, EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the {name} still runs on an unmigrated database")
            log = (tmp_path / f"{name}.log").read_text(errors="replace")
            assert code != 0, f"the {name} exited with 0; its log:\n{log}"
            assert "run `tasklight-server migrate`" in log, f"the {name}'s log:\n{log}"
        # And none of them made the indexes itself: migrating is the migration's job alone.
        with pytest.raises(SchemaOutdated):
            await store.require_schema()
    finally:
        await asyncio.to_thread(stop_processes, processes.values())
        await store.client.drop_database(fresh.database)
        await store.close()
