"""The worker's handlers get the delivered message on the event loop, with no thread hop."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest
from faststream.rabbit import RabbitBroker, RabbitMessage, TestRabbitBroker

from services.worker.app import Delivered


async def test_a_handler_gets_its_message_without_a_worker_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given a handler that takes the delivered message, when a message arrives, then
    resolving the parameter runs nothing in a worker thread (one per delivery otherwise)."""
    hops: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        hops.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    broker = RabbitBroker()
    received: list[RabbitMessage] = []

    async def handler(message: Delivered) -> None:
        received.append(message)

    broker.subscriber("delivered-test")(handler)
    async with TestRabbitBroker(broker) as test_broker:
        await test_broker.publish(b"body", "delivered-test")
    assert [m.body for m in received] == [b"body"]
    assert hops == []
