"""Group commit (shared/store/grouping.py `_Batcher`): alone at once, together while one is out."""

from __future__ import annotations

import asyncio

from shared.store.grouping import _Batcher


class Recorder:
    """A `send` that records each batch and holds it until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = asyncio.Event()

    async def send(self, batch: list[tuple[int, asyncio.Future[int]]]) -> None:
        self.batches.append([item for item, _ in batch])
        await self.release.wait()
        for item, future in batch:
            future.set_result(item * 10)


async def what_they_scheduled_ran() -> None:
    """Return once the callbacks scheduled so far have run, and the ones they scheduled, and
    theirs (the batcher's flush, then its send): the event loop runs ready callbacks in the
    order they were scheduled, so a marker scheduled behind each round runs after it."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    # Behind the submits; then behind a flush they scheduled; then behind the send it started.
    loop.call_soon(loop.call_soon, loop.call_soon, done.set)
    await done.wait()


async def test_an_item_alone_goes_at_once_and_later_ones_wait_to_go_together() -> None:
    recorder = Recorder()
    batcher: _Batcher[int, int] = _Batcher(recorder.send)
    first = asyncio.create_task(batcher.submit(1))
    for _ in range(5):  # a few turns of the loop, no time: a lingering timer would not fire
        await asyncio.sleep(0)
    # Sent without waiting for a timer: nothing else was there.
    assert recorder.batches == [[1]]
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await what_they_scheduled_ran()
    # While the first is out, the others wait for it: a send they scheduled would have begun.
    assert recorder.batches == [[1]]
    recorder.release.set()
    assert await asyncio.gather(first, *rest) == [10, 20, 30, 40]
    # ... and then go as one batch.
    assert recorder.batches == [[1], [2, 3, 4]]
    await batcher.close()


async def test_a_failed_send_fails_every_item_of_its_batch_only() -> None:
    calls = 0

    async def send(batch: list[tuple[int, asyncio.Future[int]]]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("down")
        for item, future in batch:
            future.set_result(item)

    batcher: _Batcher[int, int] = _Batcher(send)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert await batcher.submit(3) == 3
    await batcher.close()
