"""Migrate makes every index (replacing older ones), and services refuse an unmigrated database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.records import StoredTask
from shared.settings import Settings
from shared.store import SchemaOutdated, Store, open_store
from tests.support import stored_task

pytestmark = pytest.mark.integration


async def test_a_service_refuses_a_database_that_lacks_an_index(store: Store) -> None:
    await store.require_schema()  # the fixture's database is migrated
    await store.tasks.collection.drop_index("dispatch_due_at_1")
    with pytest.raises(SchemaOutdated, match="tasklight-server migrate"):
        await store.require_schema()
    assert await store.migrate() == ["created tasks(dispatch_due_at +1)"]
    await store.require_schema()


async def test_migrate_drops_the_indexes_this_version_does_without(store: Store) -> None:
    # As an earlier version made them: every write of a task would still pay for them.
    await store.tasks.collection.create_index("parent_id", sparse=True)
    await store.tasks.collection.create_index("question.deadline", sparse=True)
    await store.require_schema()  # an index too many is no reason to refuse
    done = await asyncio.gather(*(store.migrate() for _ in range(3)))
    assert sorted(line for lines in done for line in lines) == [
        "dropped tasks(parent_id +1), no longer used",
        "dropped tasks(question.deadline +1), no longer used",
    ]
    indexes = await store.tasks.collection.index_information()
    assert "parent_id_1" not in indexes
    assert "question.deadline_1" not in indexes


async def test_migrate_replaces_older_indexes_even_when_several_run_at_once(store: Store) -> None:
    # Indexes from an earlier version (not sparse, another TTL) are replaced, not an error.
    await store.tasks.collection.drop_index("dispatch_due_at_1")
    await store.tasks.collection.drop_index("finished_at_1")
    await store.tasks.collection.create_index("dispatch_due_at")
    await store.tasks.collection.create_index("finished_at", expireAfterSeconds=60)
    with pytest.raises(SchemaOutdated):
        await store.require_schema()
    await asyncio.gather(*(store.migrate() for _ in range(5)))
    indexes = await store.tasks.collection.index_information()
    assert indexes["dispatch_due_at_1"].get("sparse") is True
    assert indexes["finished_at_1"].get("sparse") is True
    assert indexes["finished_at_1"]["expireAfterSeconds"] == 30 * 24 * 3600
    # A new retention setting changes the TTL and keeps the index sparse.
    await Store(store.client, store.db.name, retention_s=123).migrate()
    indexes = await store.tasks.collection.index_information()
    assert indexes["finished_at_1"]["expireAfterSeconds"] == 123
    assert indexes["finished_at_1"].get("sparse") is True
    assert await store.migrate() == ["changed the TTL of tasks(finished_at +1)"]


async def test_migrate_records_the_phase_of_tasks_stored_before_phases(store: Store) -> None:
    released = {"_id": "t-released", "state": "running", "run": {"id": None}}
    held = {"_id": "t-held", "state": "running", "run": {"id": "r1"}}
    parent = {
        "_id": "t-parent",
        "state": "canceling",
        "run": {"id": "r2"},
        "awaiting_children": True,
    }
    done = {"_id": "t-done", "state": "completed"}
    base = stored_task().model_dump(by_alias=True, exclude={"phase", "id"})
    for older in (released, held, parent, done):
        await store.tasks.collection.insert_one({**base, **older})
    assert await store.migrate() == ["recorded the phase of 4 older tasks"]
    phases = {
        doc["_id"]: doc["phase"]
        async for doc in store.tasks.collection.find({"_id": {"$regex": "^t-"}})
    }
    assert phases == {
        "t-released": "released",
        "t-held": "held",
        "t-parent": "awaiting_children",
        "t-done": "ended",
    }
    # And before migrating, reading one implies the same phase.
    assert StoredTask.model_validate({**base, **released}).phase.value == "released"


async def test_tasklight_server_migrate_makes_a_fresh_database_one_the_services_accept(
    settings: Settings,
) -> None:
    fresh = settings.model_copy(update={"database": f"{settings.database}_fresh"})
    env = {**os.environ, "MONGODB_URL": fresh.mongodb_url, "TASKLIGHT_DATABASE": fresh.database}
    command = [str(Path(sys.executable).parent / "tasklight-server"), "migrate"]
    store = open_store(fresh)
    try:
        with pytest.raises(SchemaOutdated):
            await store.require_schema()
        first = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, check=True
        )
        assert "created tasks(owner +1, _id -1)" in first.stdout
        await store.require_schema()
        again = await asyncio.to_thread(
            subprocess.run, command, env=env, capture_output=True, text=True, check=True
        )
        assert again.stdout.strip() == "the database is up to date"
    finally:
        await store.client.drop_database(fresh.database)
        await store.close()
