"""Blocking work off the event loop: a bounded number at once, and a bounded queue."""

from __future__ import annotations

import asyncio
import threading

import pytest

from shared.offload import Busy, Offload


async def test_calls_run_in_other_threads_at_most_so_many_at_once() -> None:
    offload = Offload(at_once=2, max_waiting=10)
    lock = threading.Lock()
    now = {"running": 0, "most": 0}
    loop_thread = threading.get_ident()
    release = threading.Event()
    both_running = threading.Event()

    def work() -> int:
        with lock:
            now["running"] += 1
            now["most"] = max(now["most"], now["running"])
            if now["running"] == 2:
                both_running.set()
        release.wait(10)
        with lock:
            now["running"] -= 1
        return threading.get_ident()

    calls = [asyncio.ensure_future(offload.run(work)) for _ in range(6)]
    # Evidence, not a sleep: wait until both threads hold a call.
    assert await asyncio.to_thread(both_running.wait, 10)
    release.set()
    threads = await asyncio.gather(*calls)
    offload.close()
    assert now["most"] == 2
    assert loop_thread not in threads


async def test_one_more_than_may_wait_is_refused_at_once_and_the_rest_still_run() -> None:
    offload = Offload(at_once=1, max_waiting=2)
    release = threading.Event()
    calls = [asyncio.ensure_future(offload.run(release.wait, 10)) for _ in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(Busy):
        await offload.run(release.wait, 10)
    release.set()
    assert await asyncio.gather(*calls) == [True, True, True]
    assert await offload.run(lambda: "again") == "again"
    offload.close()


async def test_a_caller_that_stops_waiting_keeps_its_place_counted_until_its_call_is_done() -> None:
    offload = Offload(at_once=1, max_waiting=0)
    release = threading.Event()
    first = asyncio.ensure_future(offload.run(release.wait, 10))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(Busy):  # the thread still runs the abandoned call
        await offload.run(lambda: None)
    release.set()

    async def freed() -> str:
        while True:
            try:
                return await offload.run(lambda: "freed")
            except Busy:
                await asyncio.sleep(0.01)

    assert await asyncio.wait_for(freed(), 10) == "freed"
    offload.close()
