"""The sender's two lanes: endpoints that do not answer end up sharing the slow lane, and the
main lane always frees for the ones that do."""

from __future__ import annotations

from services.webhooks.lanes import Lane, Lanes


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lanes(clock: Clock, main: int = 4, per_endpoint: int = 2, slow: int = 2) -> Lanes:
    return Lanes(
        main_slots=main,
        endpoint_slots=per_endpoint,
        slow_slots=slow,
        slow_after_s=2.0,
        clock=clock,
    )


def test_an_endpoint_takes_main_lane_slots_up_to_its_cap_and_the_lane_up_to_its_size() -> None:
    clock = Clock()
    running = lanes(clock)
    assert running.lane_for("a") is Lane.MAIN
    assert running.reserve("a") is not None
    assert running.reserve("a") is not None
    assert running.reserve("a") is None
    assert running.blocked() == {"a"}
    assert running.reserve("b") is not None
    assert running.reserve("b") is not None
    assert running.free() == (0, 2)
    assert running.reserve("c") is None
    assert running.in_flight() == 4


def test_an_attempt_that_runs_on_frees_its_main_slot_and_makes_its_endpoint_slow() -> None:
    clock = Clock()
    running = lanes(clock, main=2)
    hung = [running.reserve("hangs"), running.reserve("hangs")]
    assert running.reserve("healthy") is None  # the main lane is full
    assert running.next_move_in() == 2.0
    clock.now += 2.0
    # Both attempts still run, now in the slow lane (beyond its size): the main lane is free.
    assert running.slow_endpoints() == {"hangs"}
    assert running.free() == (2, 0)
    assert running.in_flight() == 2
    assert running.lane_for("healthy") is Lane.MAIN
    assert running.lane_for("hangs") is None  # it has attempts running, and its lane is full
    assert running.blocked() == {"hangs"}
    assert running.next_move_in() is None
    assert all(token is not None for token in hung)


def test_slow_endpoints_share_the_slow_lane_one_attempt_at_a_time_each() -> None:
    clock = Clock()
    running = lanes(clock, slow=2)
    for endpoint in ("x", "y", "z"):
        token = running.reserve(endpoint)
        assert token is not None
        clock.now += 2.0
        running.end(token)  # took the whole 2 s: slow
    assert running.slow_endpoints() == {"x", "y", "z"}
    assert running.lane_for("x") is Lane.SLOW
    assert running.reserve("x") is not None
    assert running.reserve("x") is None  # one at a time
    assert running.reserve("y") is not None
    assert running.reserve("z") is None  # the slow lane is full
    assert running.blocked() == {"x", "y", "z"}
    # A healthy endpoint still has the whole main lane.
    assert running.free() == (4, 0)
    assert running.lane_for("healthy") is Lane.MAIN


def test_an_attempt_that_ends_soon_makes_a_slow_endpoint_fast_again() -> None:
    clock = Clock()
    running = lanes(clock)
    token = running.reserve("e")
    assert token is not None
    clock.now += 5.0
    running.end(token)
    assert running.slow_endpoints() == {"e"}
    token = running.reserve("e")
    assert token is not None
    clock.now += 0.1
    running.end(token)
    assert running.slow_endpoints() == set()
    assert running.lane_for("e") is Lane.MAIN


def test_a_slot_given_back_unused_says_nothing_about_its_endpoint() -> None:
    clock = Clock()
    running = lanes(clock)
    token = running.reserve("e")
    assert token is not None
    clock.now += 5.0
    running.cancel(token)
    assert running.slow_endpoints() == set()
    assert running.in_flight() == 0


def test_a_removed_endpoint_is_forgotten() -> None:
    clock = Clock()
    running = lanes(clock)
    token = running.reserve("gone")
    assert token is not None
    clock.now += 5.0
    running.end(token)
    assert running.slow_endpoints() == {"gone"}
    running.forget("gone")
    assert running.slow_endpoints() == set()
