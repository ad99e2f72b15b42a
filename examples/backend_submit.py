"""Calling tasklight from a team's backend (docs/backend.md): the Python client, then plain HTTP.

Against `make run` (its development token) or any deployment:

    TASKLIGHT_API_URL=http://127.0.0.1:8000 TASKLIGHT_WS_URL=ws://127.0.0.1:8001/ws \\
    TASKLIGHT_TOKEN=tl_dev_insecure_development_token python examples/backend_submit.py

It submits a few `test.count` tasks, follows them to the end, cancels one and shows a refused
submission, printing one line each. The exit status is 0 when everything went as described.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import httpx
from tasklight import ApiError, TasklightClient

FINAL = {"completed", "failed", "canceled"}


# --- 1. The Python client: REST for calls, the notifier's push for waiting --------------------


async def with_the_client(api_url: str, ws_url: str, token: str) -> dict[str, Any]:
    """Submit and wait (pushed, no polling), cancel, and read a refusal's problem details."""
    async with TasklightClient(api_url, ws_url, token=token) as client:
        task = await client.submit(
            "test.count",
            {"rounds": 3, "round_s": 0.2},
            # Free JSON kept with the task: what your backend needs to find it again.
            metadata={"invoice": "INV-1042"},
        )
        done = await client.wait(task["id"], timeout_s=60)  # raises WaitTimeout after 60 s

        long = await client.submit("test.count", {"rounds": 100, "round_s": 1})
        stopping = await client.cancel(long["id"])  # `canceled` if it had not started yet
        stopped = await client.wait(long["id"], timeout_s=60)

        try:
            await client.submit("test.count", {"rounds": -1})
        except ApiError as refused:
            # RFC 9457: `type` is stable, `errors[].loc` names the field, `detail` is for people.
            problem = refused.problem
        else:
            raise AssertionError("a negative round count was accepted")
    return {
        "completed": done,
        "cancel_answer": stopping["state"],
        "canceled": stopped,
        "problem": problem,
    }


# --- 2. Plain HTTP (httpx here; curl is in docs/backend.md) ----------------------------------


async def submit_once(http: httpx.AsyncClient, body: dict[str, Any], attempts: int = 5) -> str:
    """POST a task and return its address (`Location`), retrying what is worth retrying.

    One Idempotency-Key for every attempt: if an answer is lost on the way back, the retry
    returns the task the first attempt stored instead of storing a second one.
    """
    key = str(uuid.uuid4())
    for attempt in range(1, attempts + 1):
        try:
            answer = await http.post("/api/v1/tasks", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError:
            if attempt == attempts:
                raise
            await asyncio.sleep(attempt)
            continue
        if answer.status_code == 202:
            return answer.headers["Location"]
        if answer.status_code in (409, 429, 503) and attempt < attempts:
            # 503: the broker did not take it (nothing was stored); 429: over the rate limit;
            # 409: the same key is still being handled. Each says when to come back.
            await asyncio.sleep(float(answer.headers.get("Retry-After", attempt)))
            continue
        problem = answer.json()  # application/problem+json
        raise RuntimeError(f"{answer.status_code} {problem['type']}: {problem.get('detail')}")
    raise AssertionError("unreachable")


async def poll_until_final(
    http: httpx.AsyncClient, location: str, timeout_s: float = 60
) -> dict[str, Any]:
    """The fallback where a WebSocket is not an option (a cron job, a shell script): read the
    task until it is final, backing off to one read every 2 s."""
    delay_s = 0.1
    async with asyncio.timeout(timeout_s):
        while True:
            task: dict[str, Any] = (await http.get(location)).raise_for_status().json()
            if task["state"] in FINAL:
                return task
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 2.0)


async def with_plain_http(api_url: str, token: str) -> dict[str, Any]:
    """Submit with retries and an Idempotency-Key, then poll the task's address."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as http:
        location = await submit_once(http, {"name": "test.count", "args": {"rounds": 2}})
        return await poll_until_final(http, location)


async def run(api_url: str, ws_url: str, token: str) -> dict[str, Any]:
    """Both ways, one after the other; what each saw."""
    return {
        "client": await with_the_client(api_url, ws_url, token),
        "http": await with_plain_http(api_url, token),
    }


def main() -> int:
    """Run against the deployment the environment names (as the `tasklight` CLI reads it)."""
    api_url = os.environ.get("TASKLIGHT_API_URL", "http://127.0.0.1:8000")
    ws_url = os.environ.get("TASKLIGHT_WS_URL", "ws://127.0.0.1:8001/ws")
    token = os.environ.get("TASKLIGHT_TOKEN")
    if not token:
        hint = "`tasklight-server users token NAME` prints one"
        print(f"set TASKLIGHT_TOKEN ({hint})", file=sys.stderr)
        return 2
    seen = asyncio.run(run(api_url, ws_url, token))
    client, http = seen["client"], seen["http"]
    print(f"client: {client['completed']['id']} {client['completed']['state']}")
    print(f"client: cancel answered {client['cancel_answer']}, ended {client['canceled']['state']}")
    print(f"client: refused with {client['problem']['type']} at {client['problem']['errors']}")
    print(f"http:   {http['id']} {http['state']} {http['result']}")
    ok = (
        client["completed"]["state"] == "completed"
        and client["canceled"]["state"] == "canceled"
        and http["state"] == "completed"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
