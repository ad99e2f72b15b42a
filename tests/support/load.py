"""A steady stream of submissions through the api, and the completion rate it brings about.

`SteadyLoad` submits one task every 1/rate seconds, each on its own (a slow answer does not hold
back the next), as clients would: a 503 (the broker did not take the command; nothing was kept)
is retried after a pause, so every submission ends accepted or, after its patience, refused.
`recovery_s` reads the tasks' `finished_at` to say when the completion rate came back after a
fault.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

#: Seconds a client waits after a 503 before it submits again.
RETRY_PAUSE_S = 0.25


@dataclass
class SteadyLoad:
    """Submissions of `body` at `rate_per_s` for `duration_s`, through `http`."""

    http: httpx.AsyncClient
    rate_per_s: float
    duration_s: float
    body: dict[str, Any]
    #: Seconds one submission keeps retrying 503s before it counts as refused.
    patience_s: float = 60.0
    accepted: list[str] = field(default_factory=list)
    #: 503 answers (each retried).
    unavailable: int = 0
    #: Submissions still refused after `patience_s` (nothing was stored for them).
    refused: int = 0
    #: Seconds from the start of the load to each 503, for the figures.
    unavailable_at_s: list[float] = field(default_factory=list)
    started: float = 0.0

    async def run(self) -> None:
        """Submit for `duration_s`, then wait for the last answers."""
        self.started = time.monotonic()
        pending: list[asyncio.Task[None]] = []
        count = round(self.rate_per_s * self.duration_s)
        for number in range(count):
            due = self.started + number / self.rate_per_s
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pending.append(asyncio.create_task(self._submit()))
        await asyncio.gather(*pending)

    async def _submit(self) -> None:
        deadline = time.monotonic() + self.patience_s
        # A lost answer (the api closed a kept-alive connection as it was reused) is retried
        # with the same Idempotency-Key: a submission that was stored gives the same task.
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        while True:
            try:
                answer = await self.http.post("/api/v1/tasks", json=self.body, headers=headers)
            except httpx.TransportError:
                assert time.monotonic() < deadline, "every try of a submission lost its answer"
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if answer.status_code == 409:  # that first try is still in flight at the api
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if answer.status_code == 202:
                self.accepted.append(answer.json()["id"])
                return
            # Only a 503 says "nothing kept, try again"; anything else fails the test.
            assert answer.status_code == 503, f"{answer.status_code}: {answer.text}"
            headers = {"Idempotency-Key": uuid.uuid4().hex}  # nothing was kept
            self.unavailable += 1
            self.unavailable_at_s.append(time.monotonic() - self.started)
            if time.monotonic() > deadline:
                self.refused += 1
                return
            await asyncio.sleep(RETRY_PAUSE_S)


def finish_times(tasks: list[dict[str, Any]]) -> list[datetime]:
    """When each finished task finished, oldest first."""
    return sorted(doc["finished_at"] for doc in tasks if doc.get("finished_at"))


@dataclass
class Recovery:
    """How the completion rate went through a fault."""

    #: Completions per second before the fault (median of whole seconds).
    baseline_per_s: float
    #: Seconds from the fault until completions per `window_s` came back to `share` of the
    #: baseline; None if they never did.
    recovery_s: float | None
    #: The fewest completions in a whole second after the fault, until it recovered.
    lowest_per_s: int


def recovery(
    finished: list[datetime],
    fault_at: datetime,
    *,
    horizon_s: float,
    baseline_s: float = 5.0,
    window_s: float = 2.0,
    share: float = 0.8,
) -> Recovery:
    """When the completion rate recovered after `fault_at`.

    The baseline is the median count per whole second over the `baseline_s` before the fault.
    A window is good when it holds at least `share` of the baseline's completions over
    `window_s`. Tasks in flight still finish for a moment after a fault, so the dip is the first
    window after it that is not good; recovered, the first good one after the dip (scanned in
    steps of a tenth of a second). No dip at all: recovered at once. Only windows that end
    within `horizon_s` of the fault count (after it, the load has stopped).
    """
    stamps = [(t - fault_at).total_seconds() for t in finished]
    before = [s for s in stamps if -baseline_s <= s < 0]
    per_second = [sum(1 for s in before if -k - 1 <= s < -k) for k in range(int(baseline_s))]
    baseline = statistics.median(per_second) if per_second else 0.0
    after = [s for s in stamps if s >= 0]
    needed = share * baseline * window_s
    last = horizon_s - window_s

    def good(start: float) -> bool:
        return sum(1 for s in after if start <= s < start + window_s) >= needed

    starts = [tenth / 10 for tenth in range(int(last * 10) + 1)]
    dip = next((start for start in starts if not good(start)), None)
    if needed <= 0 or dip is None:
        return Recovery(baseline, 0.0, 0)
    recovered = next((start for start in starts if start > dip and good(start)), None)
    until = recovered if recovered is not None else last
    lowest = min(
        (
            sum(1 for s in after if k <= s < k + 1)
            for k in range(int(dip), max(int(dip) + 1, int(until)))
        ),
        default=0,
    )
    return Recovery(baseline, recovered, lowest)
