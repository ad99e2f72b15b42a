"""A worker cut off from the network, not killed, while it runs tasks.

The worker runs in a network namespace of its own (tests/support/netns.py), reaching the broker
and the database through relays on the host end of its veth pair. Once it runs its tasks, a second
worker starts on the host and the link is cut: the cut-off worker is alive, but can neither
renew its hold on its tasks nor store anything. A worker's hold on its tasks is a lease,
renewed by its heartbeat about every second and given up after about five (`LEASES`); then:

1. the cut-off worker stops its tasks within the lease (its `tasklight_tasks_running` falls
   to 0, read from inside its namespace);
2. the other worker finishes them within the lease plus a run;
3. once the link is back, the cut-off worker writes nothing over the newer run.

The cut-off worker stops its tasks itself, a renewal before its lease expires (self-fencing),
and writes nothing about them; another worker's janitor sees the lease expire and requeues
them. Every write of a run is guarded by its id, so a late write of the cut-off worker matches
nothing (3).

One scenario per lease setting serves the three tests. It skips where this machine cannot make
network namespaces (not root, no iproute2), and fails instead under CI.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest

from services.stack import EmbeddedMongo, free_port
from shared.clock import utcnow
from shared.migrate import migrate
from shared.settings import Settings
from shared.store import Store, open_store
from tests.support import FINAL, netns
from tests.support.faults import (
    STOP_TIMEOUT_S,
    Services,
    check_invariant,
    report_figures,
    unavailable_in_ci,
)
from tests.support.netns import NetworkNamespace
from tests.support.servers import DEV_AUTH, drop_namespace

Doc = dict[str, Any]

pytestmark = pytest.mark.fault

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    """How long a worker's hold on a task lasts without renewal, and how often it renews."""

    lease_s: float
    renew_s: float

    def env(self) -> dict[str, str]:
        """The lease settings as the workers will read them."""
        return {
            "TASKLIGHT_LEASE_S": str(self.lease_s),
            "TASKLIGHT_LEASE_RENEW_S": str(self.renew_s),
        }


LEASES = [pytest.param(Lease(lease_s=5.0, renew_s=1.0), id="lease-5s")]
#: Tasks the cut-off worker runs (its whole concurrency), each counting ROUNDS of ROUND_S: long
#: enough to be still running once the other worker has started.
TASKS = 4
ROUNDS = 30
ROUND_S = 0.5
TASK_S = ROUNDS * ROUND_S
#: Seconds allowed beyond a bound for polling, process starts and a loaded machine.
SLACK_S = 5.0
#: Where the cut-off worker serves its metrics, inside its namespace (a port of its own there).
PROBE_PORT = 8002
#: Seconds the scenario waits for the other worker to finish the tasks (beyond the bound the
#: test asserts, so that a miss still shows its figure).
FINISH_WITHIN_S = 90.0
#: Seconds the cut-off worker gets, once back, to settle (beat again, run nothing).
SETTLE_WITHIN_S = 90.0


@dataclass
class Observed:
    """What one cut-off scenario saw."""

    lease: Lease
    ids: list[str] = field(default_factory=list)
    #: Seconds from the cut until the cut-off worker ran nothing; None: not within the lease
    #: and slack (it was still running then).
    stopped_after_s: float | None = None
    #: Seconds from the cut until every task was final; None: not within FINISH_WITHIN_S.
    finished_after_s: float | None = None
    #: Each task's worker and state once final (before the link came back).
    finished_by: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: Tasks whose document changed after the link came back (written over).
    overwritten: list[str] = field(default_factory=list)
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    cut_off_worker: str = ""


async def running_tasks(namespace: NetworkNamespace) -> float | None:
    """The cut-off worker's `tasklight_tasks_running`, read inside its namespace; None if its
    probe server does not answer."""
    script = (
        "import urllib.request\n"
        f"url = 'http://127.0.0.1:{PROBE_PORT}/metrics'\n"
        "body = urllib.request.urlopen(url, timeout=2).read().decode()\n"
        "gauge = 'tasklight_tasks_running '\n"
        "print(next(line.split()[1] for line in body.splitlines() if line.startswith(gauge)))"
    )
    try:
        out = await asyncio.to_thread(namespace.run, [sys.executable, "-c", script], 10)
    except (RuntimeError, subprocess.TimeoutExpired):
        return None
    return float(out.strip())


async def until(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    deadline: float,
    interval_s: float = 0.25,
) -> tuple[bool, T | None]:
    """Call `probe` until `accept` takes its value (True and the value) or until `deadline`
    (monotonic) passes (False and the last value)."""
    value: T | None = None
    while time.monotonic() < deadline:
        value = await probe()
        if accept(value):
            return True, value
        await asyncio.sleep(interval_s)
    return False, value


async def final_docs(store: Store, ids: list[str]) -> dict[str, Doc]:
    return {doc["_id"]: doc async for doc in store.tasks.collection.find({"_id": {"$in": ids}})}


@pytest.fixture(scope="module", params=LEASES)
async def cut_off(
    request: pytest.FixtureRequest,
    mongo_server: tuple[str, EmbeddedMongo | None],
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Observed]:
    """Run the scenario once per lease setting; what it saw."""
    reason = netns.unavailable()
    if reason is not None:
        unavailable_in_ci(reason)
    lease: Lease = request.param
    tmp = tmp_path_factory.mktemp("cut-off")
    own_mongo = None
    mongo_url = mongo_server[0]
    if mongo_server[1] is not None:  # a database of its own, as every fault test has
        own_mongo = EmbeddedMongo(tmp / "mongo", log_path=tmp / "mongo.log")
        own_mongo.start()
        mongo_url = own_mongo.url
    unique = uuid.uuid4().hex[:12]
    settings = Settings(
        mongodb_url=mongo_url,
        amqp_url=amqp_url,
        database=f"test_{unique}",
        namespace=f"test.{unique}",
        api_port=free_port(),
        api_metrics_port=free_port(),
        notifier_port=free_port(),
        worker_port=0,
        worker_name=f"test-worker-{unique}",
        dev_mode=True,
        builtin_tasks=True,
    )
    await migrate(settings)
    namespace = NetworkNamespace(f"tasklight-{unique[:8]}").create()
    services = Services(settings, tmp)
    services.env.update(lease.env())
    store = open_store(settings)
    try:
        yield await scenario(lease, settings, namespace, services, store, tmp)
    finally:
        await asyncio.to_thread(services.stop_all)
        await namespace.delete()
        await store.close()
        await drop_namespace(settings)
        if own_mongo is not None:
            own_mongo.kill()


async def scenario(
    lease: Lease,
    settings: Settings,
    namespace: NetworkNamespace,
    services: Services,
    store: Store,
    tmp: Path,
) -> Observed:
    """Cut a worker off while it runs its tasks, let another finish them, let it back on."""
    seen = Observed(lease)
    started = time.monotonic()
    broker = urlsplit(settings.amqp_addresses()[0])
    database = urlsplit(settings.mongodb_url)
    to_broker = await namespace.relay(broker.hostname or "127.0.0.1", broker.port or 5672)
    to_database = await namespace.relay(database.hostname or "127.0.0.1", database.port or 27017)

    # Given a worker in its namespace, reaching both through the relays, running its tasks
    await services.start_api()
    cut_off_worker = seen.cut_off_worker = f"{settings.worker_name}-cut-off"
    log_dir = tmp / cut_off_worker
    log_dir.mkdir()
    env = {
        **services.env,
        "TASKLIGHT_WORKER_NAME": cut_off_worker,
        "TASKLIGHT_WORKER_CONCURRENCY": str(TASKS),
        "TASKLIGHT_WORKER_PORT": str(PROBE_PORT),
        "MONGODB_URL": (
            f"mongodb://{namespace.host_address}:{to_database.port}/?directConnection=true"
        ),
        "AMQP_URL": f"amqp://guest:guest@{namespace.host_address}:{to_broker.port}/",
    }
    services.workers[cut_off_worker] = namespace.start_service("worker", env, log_dir)
    await services.until_workers_beat(store, [cut_off_worker])
    async with httpx.AsyncClient(base_url=services.base_url, headers=DEV_AUTH, timeout=30) as http:
        body = {"name": "test.count", "args": {"rounds": ROUNDS, "round_s": ROUND_S}}
        for _ in range(TASKS):
            answer = await http.post("/api/v1/tasks", json=body)
            assert answer.status_code == 202, answer.text
            seen.ids.append(answer.json()["id"])
    held = await until(
        lambda: store.tasks.collection.count_documents(
            {"_id": {"$in": seen.ids}, "run.worker": cut_off_worker}
        ),
        lambda count: count == TASKS,
        deadline=time.monotonic() + 30,
    )
    assert held[0], f"the worker in the namespace never ran all {TASKS} tasks ({held[1]})"
    # And another worker, on the host, with nothing to do yet
    other = services.start_worker(concurrency=TASKS)
    await services.until_workers_beat(store, [other])

    # When the cut-off worker's link is cut
    namespace.cut()
    cut_at = time.monotonic()

    # (1) does it stop its tasks within the lease?
    stopped, _ = await until(
        lambda: running_tasks(namespace),
        lambda running: running == 0,
        deadline=cut_at + lease.lease_s + SLACK_S,
    )
    seen.stopped_after_s = time.monotonic() - cut_at if stopped else None

    # (2) when does the other worker finish them?
    finished, _ = await until(
        lambda: store.tasks.collection.count_documents(
            {"_id": {"$in": seen.ids}, "state": {"$in": list(FINAL)}}
        ),
        lambda count: count == TASKS,
        deadline=cut_at + FINISH_WITHIN_S,
    )
    seen.finished_after_s = time.monotonic() - cut_at if finished else None
    before = await final_docs(store, seen.ids)
    seen.finished_by = {
        task_id: ((doc.get("worker") or {}).get("name", ""), doc["state"])
        for task_id, doc in before.items()
    }

    # (3) the link comes back: once the cut-off worker has settled and stopped, and every byte
    # it sent has gone through, is anything of the newer runs written over?
    namespace.restore()
    restored_at = utcnow()
    if finished:
        await settle(namespace, store, cut_off_worker, restored_at)
    process = services.workers.pop(cut_off_worker)
    await asyncio.to_thread(stop, process)

    async def open_connections() -> int:
        return len(to_database.writers) + len(to_broker.writers)

    drained, still_open = await until(
        open_connections, lambda count: count == 0, deadline=time.monotonic() + 60
    )
    assert drained, f"{still_open} connections of the cut-off worker never closed"
    after = await final_docs(store, seen.ids)
    seen.overwritten = [
        task_id for task_id in seen.ids if after.get(task_id) != before.get(task_id)
    ]
    tally = await check_invariant(store, seen.ids)
    seen.duplicates, seen.problems = tally.duplicates, tally.problems

    report_figures(
        f"worker cut off ({lease.lease_s:g} s lease)",
        tasks=TASKS,
        stopped_after_s=seen.stopped_after_s if stopped else f">{lease.lease_s + SLACK_S:g}",
        finished_after_s=seen.finished_after_s if finished else f">{FINISH_WITHIN_S:g}",
        finished_by_the_other=sum(
            1
            for worker, state in seen.finished_by.values()
            if (worker, state) == (other, "completed")
        ),
        lost=TASKS - len(after),
        stuck=sum(1 for doc in after.values() if doc["state"] not in FINAL),
        duplicated=seen.duplicates,
        overwritten=len(seen.overwritten),
        wall_s=time.monotonic() - started,
    )
    return seen


async def settle(
    namespace: NetworkNamespace, store: Store, worker: str, restored_at: datetime
) -> None:
    """Wait until the cut-off worker beats again and runs nothing (it has given up its runs)."""
    deadline = time.monotonic() + SETTLE_WITHIN_S

    async def beating_and_idle() -> bool:
        doc = await store.workers.collection.find_one({"_id": worker})
        if doc is None or doc["last_heartbeat"] <= restored_at:
            return False
        return await running_tasks(namespace) == 0

    settled, _ = await until(beating_and_idle, bool, deadline=deadline, interval_s=0.5)
    assert settled, f"the cut-off worker did not settle within {SETTLE_WITHIN_S} s of the link"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a worker, SIGKILL it if it outstays STOP_TIMEOUT_S."""
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.timeout(400)
async def test_a_cut_off_worker_stops_its_tasks_within_the_lease(cut_off: Observed) -> None:
    bound_s = cut_off.lease.lease_s + SLACK_S
    assert cut_off.stopped_after_s is not None, f"still running tasks {bound_s:g} s after the cut"
    assert cut_off.stopped_after_s <= bound_s


@pytest.mark.timeout(400)
async def test_another_worker_finishes_a_cut_off_workers_tasks_within_the_lease(
    cut_off: Observed,
) -> None:
    bound_s = cut_off.lease.lease_s + TASK_S + SLACK_S
    finished_after_s = cut_off.finished_after_s
    assert finished_after_s is not None, f"not all final {FINISH_WITHIN_S:g} s after the cut"
    assert finished_after_s <= bound_s, f"final only {finished_after_s:.1f} s after the cut"
    assert all(
        worker != cut_off.cut_off_worker and state == "completed"
        for worker, state in cut_off.finished_by.values()
    ), cut_off.finished_by


@pytest.mark.timeout(400)
async def test_a_cut_off_worker_back_on_the_network_writes_nothing_over_the_newer_run(
    cut_off: Observed,
) -> None:
    assert cut_off.finished_after_s is not None, "the other worker never finished the tasks"
    assert cut_off.overwritten == [], f"written over once back: {cut_off.overwritten}"
    assert cut_off.duplicates == 0
    assert cut_off.problems == [], cut_off.problems
