"""The database killed under running services: they recover, every task ends once, no live
worker's task is failed or taken for lost, and no task ever runs twice at once.

A worker that cannot renew its lease for `TASKLIGHT_LEASE_S` minus `TASKLIGHT_LEASE_RENEW_S` (its
fence) stops its running tasks itself, since it cannot tell an outage from being cut off from
the others, and hands them back once the database answers again. So, either side of the fence:

- an outage shorter than the fence changes nothing for a running task: each runs once, to its
  end, on the worker that claimed it; nothing is handed back or run again;
- an outage longer than the fence stops the running tasks; handed back, they run again from
  the start, never two runs of one task at once.

The tasks journal each run's start and end from inside the handler (tests/support/journal.py):
that, not what the runs wrote to the database, shows whether two runs of one task overlapped.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack import EmbeddedMongo
from shared.lifecycle import TaskState
from shared.store import Store
from tests.support import journal
from tests.support.faults import (
    Services,
    Tally,
    assert_nothing_lost_or_doubled,
    report_figures,
    submit_many,
    until_all_final,
)
from tests.support.journal import Span
from tests.support.servers import DEV_AUTH

pytestmark = pytest.mark.fault

#: Seconds the database stays killed once the api has answered 503 without it (which takes the
#: driver's server selection, about 5 s); its start again adds under a second. The outage, from
#: the kill until it listens again, is measured.
OUTAGE_S = 3.0
#: A lease whose fence outlasts the outage and the database's start by far, on a busy machine.
LONG_LEASE_ENV = {"TASKLIGHT_LEASE_S": "30"}


@dataclass
class Outage:
    """What a test's outage did."""

    ids: list[str]
    tally: Tally
    #: From the kill until the database listened again.
    down_s: float
    #: The workers' fence: how long a worker runs its tasks without a renewal answered.
    fence_s: float
    #: From the last submission (after the restart) until every task was final.
    recovery_s: float
    #: Each task's runs, as their handlers journaled them.
    runs: dict[str, list[Span]]
    #: Each task as stored.
    stored: dict[str, dict[str, Any]]
    #: Tasks with a run ended as lost, or given back for anything but a lost lease.
    lost: int
    other: int

    @property
    def run_again(self) -> int:
        """Tasks whose handler ran more than once."""
        return sum(len(self.runs.get(task, [])) > 1 for task in self.ids)

    @property
    def twice_at_once(self) -> list[str]:
        """Tasks two of whose runs ran at the same time."""
        return [task for task, spans in self.runs.items() if journal.at_once(spans)]

    @property
    def unended(self) -> list[str]:
        """Tasks with a run whose handler never journaled its end."""
        return [t for t, spans in self.runs.items() if any(s.end is None for s in spans)]

    def figures(self, test: str) -> None:
        """Print the figures (and keep them for the session's summary)."""
        report_figures(
            test,
            outage_s=self.down_s,
            fence_s=self.fence_s,
            tasks=len(self.ids),
            completed=self.tally.completed,
            failed=len(self.ids) - self.tally.completed,
            handed_back=self.tally.requeues,
            run_again=self.run_again,
            twice_at_once=len(self.twice_at_once),
            taken_for_lost=self.lost,
            all_final_after_s=self.recovery_s,
        )


async def kill_the_database_during_claims(
    services: Services, own_mongo: EmbeddedMongo, store: Store, log: Path
) -> Outage:
    """Run journaled tasks on the api and two workers, kill the database while claims are in
    flight and more submissions arrive, start it again after `OUTAGE_S`, submit more, and wait
    until every task is final."""
    services.env["TASKLIGHT_TASK_MODULES"] = journal.MODULE
    fence_s = float(services.env["TASKLIGHT_LEASE_S"]) - float(
        services.env["TASKLIGHT_LEASE_RENEW_S"]
    )
    await services.start_api()
    names = [services.start_worker(), services.start_worker()]
    await services.until_workers_beat(store, names)

    def counts(rounds: int, round_s: float) -> dict[str, Any]:
        return {"rounds": rounds, "round_s": round_s, "journal": str(log)}

    name = journal.JOURNALED
    async with httpx.AsyncClient(base_url=services.base_url, timeout=30, headers=DEV_AUTH) as http:
        # Long enough that those running at the kill still run when a fence comes.
        ids = await submit_many(http, 30, counts(8, 0.25), name=name)
        deadline = time.monotonic() + 30
        while await store.tasks.collection.count_documents({"state": "running"}) < 2:
            assert time.monotonic() < deadline, "no tasks started"
            await asyncio.sleep(0.05)

        more = asyncio.create_task(submit_many(http, 20, counts(1, 0.05), name=name))
        await asyncio.sleep(0.1)
        killed = time.monotonic()
        await asyncio.to_thread(own_mongo.kill)
        down = await http.get("/api/v1/tasks")
        assert down.status_code == 503, down.text
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(own_mongo.start)
        down_s = time.monotonic() - killed
        ids += await more

        deadline = time.monotonic() + 30
        while (await http.get("/api/v1/tasks")).status_code != 200:
            assert time.monotonic() < deadline, "the api did not recover"
            await asyncio.sleep(0.2)
        ids += await submit_many(http, 10, counts(2, 0.1), name=name)

    recovery_s = await until_all_final(store, ids, timeout_s=120)
    assert all(services.workers[worker].poll() is None for worker in names)
    tally = await assert_nothing_lost_or_doubled(store, ids)
    collection = store.tasks.collection
    stored = {doc["_id"]: doc async for doc in collection.find({"_id": {"$in": ids}})}
    lost = await collection.count_documents({"attempts.outcome": "worker_lost"})
    other = await collection.count_documents(
        {"attempts": {"$elemMatch": {"outcome": {"$ne": "lease_lost"}}}}
    )
    return Outage(
        ids=ids,
        tally=tally,
        down_s=down_s,
        fence_s=fence_s,
        recovery_s=recovery_s,
        runs=journal.runs_of(log),
        stored=stored,
        lost=lost,
        other=other,
    )


@pytest.mark.timeout(240)
async def test_a_database_outage_shorter_than_the_fence_fails_hands_back_and_reruns_nothing(
    services: Services, own_mongo: EmbeddedMongo | None, fault_store: Store, tmp_path: Path
) -> None:
    if own_mongo is None:
        pytest.skip("the database is not one the tests started, so they cannot restart it")
    # Given workers whose fence outlasts the outage
    services.env.update(LONG_LEASE_ENV)
    # When the database is killed during claims, and started again
    outage = await kill_the_database_during_claims(
        services, own_mongo, fault_store, tmp_path / "journal.jsonl"
    )
    outage.figures("database killed, outage shorter than the fence")
    assert outage.down_s < outage.fence_s, "the outage outlasted the fence: not this scenario"
    # Then every task completed in one run, on the worker that claimed it: none failed, handed
    # back or taken for lost, as stored (one run, no attempts) and as its handler journaled
    # (started once, ended once)
    assert outage.tally.completed == len(outage.ids)
    assert (outage.tally.requeues, outage.lost, outage.other) == (0, 0, 0)
    assert {
        task_id: (doc["runs"], doc.get("attempts") or [])
        for task_id, doc in outage.stored.items()
        if (doc["runs"], doc.get("attempts") or []) != (1, [])
    } == {}
    assert {task: len(outage.runs.get(task, [])) for task in outage.ids} == dict.fromkeys(
        outage.ids, 1
    )
    assert outage.unended == []


@pytest.mark.timeout(240)
async def test_a_database_outage_longer_than_the_fence_fails_nothing_and_runs_nothing_twice_at_once(
    services: Services, own_mongo: EmbeddedMongo | None, fault_store: Store, tmp_path: Path
) -> None:
    if own_mongo is None:
        pytest.skip("the database is not one the tests started, so they cannot restart it")
    # Given workers on the quick lease (QUICK_ENV: 2 s, renewed every 0.5 s: a 1.5 s fence)
    # When the database is killed during claims, and started again after longer than the fence
    outage = await kill_the_database_during_claims(
        services, own_mongo, fault_store, tmp_path / "journal.jsonl"
    )
    outage.figures("database killed, outage longer than the fence")
    assert outage.down_s > outage.fence_s, "the outage was within the fence: not this scenario"
    # Then the workers, still the same processes, stopped the tasks they were running and
    # handed them back, and nothing else: every task completed, none failed or taken for lost
    assert outage.tally.completed == len(outage.ids)
    assert outage.tally.requeues > 0, "no task was running at the fence: nothing was tested"
    assert (outage.lost, outage.other) == (0, 0)
    # And a task handed back ran again from the start, but never while its stopped run still
    # ran: each run's handler had ended before the next one began
    assert outage.unended == []
    assert outage.twice_at_once == []
    # A run can be claimed and stopped before its handler began: a task journals at least one
    # run, and no more than it stored
    journaled = {task: len(outage.runs.get(task, [])) for task in outage.ids}
    assert [task for task, runs in journaled.items() if runs == 0] == []
    assert {
        task: (runs, outage.stored[task]["runs"])
        for task, runs in journaled.items()
        if runs > outage.stored[task]["runs"]
    } == {}
    assert all(doc["state"] == TaskState.COMPLETED for doc in outage.stored.values())
