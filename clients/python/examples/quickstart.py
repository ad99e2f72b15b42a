"""The worked example of clients/python/README.md: submit, follow, cancel, wait for all.

    TASKLIGHT_API_URL=http://127.0.0.1:8000 TASKLIGHT_WS_URL=ws://127.0.0.1:8001/ws \\
    TASKLIGHT_TOKEN=tl_dev_insecure_development_token python examples/quickstart.py

Exits 0 once every step went as the README says; prints one line per step.
"""

from __future__ import annotations

import asyncio
import os

from tasklight import ApiError, SyncTasklightClient, TasklightClient

API_URL = os.environ.get("TASKLIGHT_API_URL", "http://127.0.0.1:8000")
WS_URL = os.environ.get("TASKLIGHT_WS_URL", "ws://127.0.0.1:8001/ws")
TOKEN = os.environ.get("TASKLIGHT_TOKEN")


def blocking() -> None:
    """The blocking client: what a script, a Django view or a test uses."""
    with SyncTasklightClient(API_URL, WS_URL, token=TOKEN) as client:
        task = client.submit("test.count", {"rounds": 3, "round_s": 0.1})
        done = client.wait(task["id"], timeout_s=60)  # pushed by the notifier, not polled
        print("counted:", done["result"])  # counted: {'counted': 3}

        try:
            client.submit("test.count", {"rounds": -1})
        except ApiError as refused:  # RFC 9457 problem details
            print("refused:", refused.status, refused.problem["type"])
            # refused: 422 urn:tasklight:problem:invalid-task


async def non_blocking() -> None:
    """The async client: the same calls, awaited; and a live subscription."""
    async with TasklightClient(API_URL, WS_URL, token=TOKEN) as client:
        long = await client.submit("test.count", {"rounds": 100, "round_s": 0.2})
        canceling = False
        async for seen in client.subscribe([long["id"]]):  # current state, then each change
            if seen["state"] == "running" and not canceling:
                canceling = True
                await client.cancel(long["id"])  # stops at the handler's next checkpoint
            elif seen["state"] == "canceled":
                break
        print("stopped:", seen["state"])  # stopped: canceled

        await client.submit_many([{"name": "test.noop"} for _ in range(5)])
        await client.wait_all(timeout_s=60)  # until none of this user's tasks is pending
        print("pending:", len(await client.list(group="pending")))  # pending: 0


if __name__ == "__main__":
    blocking()
    asyncio.run(non_blocking())
