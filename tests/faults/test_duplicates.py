"""The same command published twice (a relay racing a confirm, a redelivery) runs its task once."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path

import httpx
import pytest

from shared.settings import Settings
from shared.store import Store
from tests.support import eventually
from tests.support.faults import (
    Services,
    assert_nothing_lost_or_doubled,
    submit_many,
    until_all_final,
)
from tests.support.rest import (
    publish_again,
    queued_commands,
)

pytestmark = pytest.mark.fault

#: What a worker logs when it declines the command of a task that has ended (`Runs.decline`).
DECLINED_AS_ENDED = re.compile(r"task (\S+) already \w+; not running it again")


def declined_as_ended(log_dir: Path) -> Counter[str]:
    """How many copies of each task's command the workers declined because it had ended, as
    their logs (one folder per worker) say."""
    found: Counter[str] = Counter()
    for log in log_dir.rglob("worker.log"):
        found.update(DECLINED_AS_ENDED.findall(log.read_text(errors="replace")))
    return found


@pytest.mark.timeout(120)
async def test_a_command_published_twice_runs_its_task_once(
    services: Services, http: httpx.AsyncClient, fault_store: Store, settings: Settings
) -> None:
    # Given tasks whose commands are each in the queue twice before any worker runs
    await services.start_api()
    ids = await submit_many(http, 20, {"rounds": 2, "round_s": 0.05})
    for task_id in ids:
        await publish_again(settings, task_id, "test.count")
    assert await queued_commands(settings) == 2 * len(ids)

    # When two workers take both copies at once
    names = [services.start_worker(), services.start_worker()]
    await services.until_workers_beat(fault_store, names)
    await until_all_final(fault_store, ids, timeout_s=60)

    # Then each task ran once and completed once
    tally = await assert_nothing_lost_or_doubled(fault_store, ids)
    assert tally.completed == len(ids)
    runs = [doc["runs"] async for doc in fault_store.tasks.collection.find({"_id": {"$in": ids}})]
    assert runs == [1] * len(ids)

    # And a copy arriving after the task ended changes nothing
    before = {doc["_id"]: doc["version"] async for doc in fault_store.tasks.collection.find({})}
    declined = declined_as_ended(services.log_dir)
    late = ids[:5]
    for task_id in late:
        await publish_again(settings, task_id, "test.count")
    # Each copy was taken, its task found ended, and the copy declined: looked at, all of them
    await eventually(
        lambda: asyncio.sleep(0, declined_as_ended(services.log_dir)),
        lambda now: all(now[t] > declined[t] for t in late),
        timeout_s=30,
    )
    assert await queued_commands(settings) == 0
    after = {doc["_id"]: doc["version"] async for doc in fault_store.tasks.collection.find({})}
    assert after == before
    await assert_nothing_lost_or_doubled(fault_store, ids)
