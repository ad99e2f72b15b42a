"""A worker's lease as it sees it: when it must stop its tasks, and the timings that make sense."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.worker.lease import LeaseClock, fence_after_s, fenced
from shared.settings import Settings, lease_problems


def test_a_worker_stops_its_tasks_one_renewal_before_its_lease_expires() -> None:
    assert fence_after_s(lease_s=5, renew_s=1) == 4
    assert not fenced(103.9, 100.0, lease_s=5, renew_s=1)
    assert fenced(104.0, 100.0, lease_s=5, renew_s=1)


def test_a_worker_that_never_renewed_runs_nothing() -> None:
    assert LeaseClock(lease_s=5, renew_s=1).fenced(now=0.0)


def test_an_answered_renewal_lifts_the_fence_and_a_late_older_answer_changes_nothing() -> None:
    lease = LeaseClock(lease_s=5, renew_s=1)
    lease.renewed(sent_at=100.0)
    assert not lease.fenced(now=103.0)
    assert lease.fenced(now=104.5)
    lease.renewed(sent_at=104.0)
    assert not lease.fenced(now=104.5)
    lease.renewed(sent_at=99.0)  # an answer that was in flight for a long time
    assert lease.renewed_at == 104.0


def test_the_default_lease_timings_make_sense() -> None:
    settings = Settings()
    assert (settings.lease_s, settings.lease_renew_s, settings.janitor_interval_s) == (5, 1, 1)
    assert (
        lease_problems(settings.lease_s, settings.lease_renew_s, settings.janitor_interval_s) == []
    )


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"lease_s": 2, "lease_renew_s": 1}, "TASKLIGHT_LEASE_RENEW_S (1) must be at most a third"),
        (
            {"lease_s": 5, "janitor_interval_s": 6},
            "TASKLIGHT_JANITOR_INTERVAL_S (6) must not exceed",
        ),
    ],
)
def test_lease_timings_that_make_no_sense_are_refused_at_start_saying_why(
    options: dict[str, float], says: str
) -> None:
    with pytest.raises(
        ValidationError, match=r"(?s)" + says.replace("(", r"\(").replace(")", r"\)")
    ):
        Settings(**options)  # type: ignore[arg-type]


def test_the_older_names_of_the_lease_settings_are_still_read_and_the_new_ones_win(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TASKLIGHT_WORKER_TTL_S", "30")
    monkeypatch.setenv("TASKLIGHT_HEARTBEAT_S", "5")
    assert (Settings().lease_s, Settings().lease_renew_s) == (30, 5)
    monkeypatch.setenv("TASKLIGHT_LEASE_S", "6")
    monkeypatch.setenv("TASKLIGHT_LEASE_RENEW_S", "2")
    assert (Settings().lease_s, Settings().lease_renew_s) == (6, 2)
