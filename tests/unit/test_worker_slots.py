"""The worker's slots go to the highest priority waiting first, the oldest first among equals."""

from __future__ import annotations

import asyncio

from services.worker.slots import Slots


async def test_a_freed_slot_goes_to_the_high_priority_waiter_before_older_normal_ones() -> None:
    slots = Slots(1)
    order: list[str] = []
    release = asyncio.Event()

    async def run(name: str, priority: int) -> None:
        async with slots.held(priority):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(run("first", 0))
    await asyncio.sleep(0)
    normal = [asyncio.create_task(run(f"normal-{n}", 0)) for n in range(3)]
    await asyncio.sleep(0)
    high = asyncio.create_task(run("high", 1))
    await asyncio.sleep(0)
    assert slots.waiting == 4
    release.set()
    await asyncio.gather(first, high, *normal)
    assert order == ["first", "high", "normal-0", "normal-1", "normal-2"]
    assert slots.free == 1


async def test_a_waiter_cancelled_gives_up_its_turn_and_loses_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.sleep(0)
    slots.release()
    assert slots.free == 1
    await asyncio.wait_for(slots.acquire(), timeout=1)
    assert slots.free == 0
