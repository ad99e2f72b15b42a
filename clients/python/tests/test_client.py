"""The async and blocking clients against a running tasklight."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import Deployment, StallingProxy
from tasklight import (
    ApiError,
    ConnectionStatus,
    NotFound,
    SyncTasklightClient,
    TasklightClient,
    Unauthorized,
    Unreachable,
    WaitTimeout,
)

MISSING_ID = "01900000-0000-7000-8000-000000000000"


@pytest.fixture
def client(deployment: Deployment) -> SyncTasklightClient:
    """A blocking client acting with the deployment's token."""
    return SyncTasklightClient(deployment.api_url, deployment.ws_url, token=deployment.token)


def test_the_blocking_client_submits_waits_lists_and_reads_history(
    client: SyncTasklightClient,
) -> None:
    with client:
        task = client.submit("test.count", {"rounds": 2, "round_s": 0.05}, metadata={"n": 1})
        assert (task["state"], task["metadata"]) == ("waiting", {"n": 1})

        done = client.wait(task["id"], timeout_s=60)

        assert (done["state"], done["result"]) == ("completed", {"counted": 2})
        assert client.get(task["id"])["version"] == done["version"]
        assert task["id"] in [t["id"] for t in client.list(name="test.count", limit=None)]
        states = [event["target"] for event in client.events(task["id"])]
        assert states[-1] == "completed"
        assert client.delete(task["id"]) is None
        with pytest.raises(NotFound):
            client.get(task["id"])


def test_the_blocking_client_works_where_an_event_loop_already_runs(
    deployment: Deployment,
) -> None:
    async def inside_a_loop() -> str:
        with SyncTasklightClient(
            deployment.api_url, deployment.ws_url, token=deployment.token
        ) as client:
            return client.submit("test.noop")["state"]

    assert asyncio.run(inside_a_loop()) == "waiting"


def test_refusals_are_typed_errors_with_their_problem_details(
    client: SyncTasklightClient, deployment: Deployment
) -> None:
    with client:
        with pytest.raises(ApiError) as refused:
            client.submit("test.count", {"rounds": -1})
        assert refused.value.status == 422
        assert refused.value.problem["type"] == "urn:tasklight:problem:invalid-task"
        with pytest.raises(NotFound):
            client.get(MISSING_ID)
    with (
        SyncTasklightClient(deployment.api_url, deployment.ws_url, token="tl_wrong") as stranger,
        pytest.raises(Unauthorized),
    ):
        stranger.list()
    with (
        SyncTasklightClient("http://127.0.0.1:9", deployment.ws_url) as nowhere,
        pytest.raises(Unreachable, match="did not answer"),
    ):
        nowhere.list()


def test_wait_all_returns_when_nothing_is_pending_and_names_what_is_on_timeout(
    client: SyncTasklightClient,
) -> None:
    with client:
        client.submit_many([{"name": "test.count", "args": {"rounds": 2, "round_s": 0.05}}] * 3)
        client.wait_all(timeout_s=60)
        assert client.list(group="pending") == []

        long = client.submit("test.count", {"rounds": 100, "round_s": 0.2})
        with pytest.raises(WaitTimeout) as timed_out:
            client.wait_all(timeout_s=1.0)
        assert [t["id"] for t in timed_out.value.pending] == [long["id"]]
        assert long["id"] in str(timed_out.value)
        client.cancel(long["id"])
        assert client.wait(long["id"], timeout_s=60)["state"] == "canceled"


def test_a_subscription_sees_the_current_state_then_every_change(
    deployment: Deployment,
) -> None:
    async def follow() -> list[str]:
        async with TasklightClient(
            deployment.api_url, deployment.ws_url, token=deployment.token
        ) as client:
            task = await client.submit("test.count", {"rounds": 3, "round_s": 0.05})
            states: list[str] = []
            async with asyncio.timeout(60):
                async for seen in client.subscribe([task["id"]]):
                    states.append(seen["state"])
                    if seen["state"] == "completed":
                        return states
        raise AssertionError("unreachable")

    states = asyncio.run(follow())
    assert states[-1] == "completed"
    assert states.count("completed") == 1


def test_a_silently_dead_connection_is_noticed_within_seconds_and_replaced(
    deployment: Deployment, stalling_notifier: tuple[StallingProxy, str]
) -> None:
    proxy, ws_url = stalling_notifier
    seen: list[ConnectionStatus] = []

    async def scenario() -> float:
        live, lost = asyncio.Event(), asyncio.Event()

        def on_status(status: ConnectionStatus) -> None:
            seen.append(status)
            {"live": live, "reconnecting": lost}.get(status, asyncio.Event()).set()

        async with TasklightClient(
            deployment.api_url, ws_url, token=deployment.token, on_status=on_status
        ) as client:
            task = await client.submit("test.count", {"rounds": 100, "round_s": 0.2})

            async def follow() -> None:
                async for _ in client.subscribe([task["id"]]):
                    pass

            follower = asyncio.create_task(follow())
            try:
                await asyncio.wait_for(live.wait(), timeout=20)
                stalled_at = time.monotonic()
                proxy.stall()
                await asyncio.wait_for(lost.wait(), timeout=20)
                noticed_after_s = time.monotonic() - stalled_at
            finally:
                follower.cancel()
                await asyncio.gather(follower, return_exceptions=True)
                await client.cancel(task["id"])
            return noticed_after_s

    noticed_after_s = asyncio.run(scenario())

    # A ping every 2 s, a pong due within 3 s, 1 s for a closing frame: given up within 6 s.
    assert noticed_after_s < 8, f"took {noticed_after_s:.1f} s"
    assert seen[:3] == ["connecting", "live", "reconnecting"]
