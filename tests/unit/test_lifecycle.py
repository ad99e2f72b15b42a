"""The lifecycle allows exactly the changes its diagram draws, and nothing leaves a final state."""

from __future__ import annotations

import itertools

import pytest

from shared.lifecycle import (
    FINAL_STATES,
    GROUP_STATES,
    STATE_PHASES,
    Phase,
    TaskGroup,
    TaskState,
    can_change,
    can_move,
    group_of,
)

W, R, CING, DONE, FAIL, CNCL = (
    TaskState.WAITING,
    TaskState.RUNNING,
    TaskState.CANCELING,
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.CANCELED,
)

#: Written out independently of shared/lifecycle.py, from its diagram.
EXPECTED_ALLOWED = {
    (W, R),
    (W, CNCL),
    (W, FAIL),  # a dead-lettered command's task fails without starting
    (R, DONE),
    (R, FAIL),
    (R, CING),
    (CING, CNCL),
    (CING, DONE),
    (CING, FAIL),
}

ALL_PAIRS = list(itertools.product(TaskState, TaskState))


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_every_pair_of_states_is_allowed_exactly_when_the_design_allows_it(
    source: TaskState, target: TaskState
) -> None:
    assert can_change(source, target) == ((source, target) in EXPECTED_ALLOWED)


def test_final_states_allow_no_change_at_all() -> None:
    assert {DONE, FAIL, CNCL} == FINAL_STATES
    for final, other in itertools.product(FINAL_STATES, TaskState):
        assert not can_change(final, other)


def test_the_three_dialog_groups_partition_the_states_as_the_tasks_dialog_shows_them() -> None:
    assert GROUP_STATES[TaskGroup.PENDING] == {W, R, CING}
    assert GROUP_STATES[TaskGroup.FAILED] == {FAIL, CNCL}
    assert GROUP_STATES[TaskGroup.FINISHED] == {DONE}
    assert [group_of(s) for s in TaskState] == [
        TaskGroup.PENDING,
        TaskGroup.PENDING,
        TaskGroup.PENDING,
        TaskGroup.FINISHED,
        TaskGroup.FAILED,
        TaskGroup.FAILED,
    ]


Q, BLK, SCH, H, REL, AWAIT, ASK, END = (
    Phase.QUEUED,
    Phase.BLOCKED,
    Phase.SCHEDULED,
    Phase.HELD,
    Phase.RELEASED,
    Phase.AWAITING_CHILDREN,
    Phase.AWAITING_ANSWER,
    Phase.ENDED,
)
#: Every (state, phase) move a task makes, written out from the module docstring.
EXPECTED_MOVES = {
    ((W, Q), (R, H)),  # the first claim
    ((W, Q), (CNCL, END)),  # canceled before it ran
    ((W, Q), (FAIL, END)),  # dead-lettered
    ((W, BLK), (W, Q)),  # its resources are its own: its command is queued
    ((W, Q), (W, BLK)),  # it took its resources by key and found others queued for them
    ((W, SCH), (W, Q)),  # its time came
    ((W, SCH), (W, BLK)),  # its time came, and a resource it needs is taken
    *(((W, p), (f, END)) for p in (BLK, SCH) for f in (CNCL, FAIL)),  # canceled while waiting
    ((R, H), (R, REL)),  # retry, hand-back, a lost worker's requeue
    ((R, REL), (R, H)),  # the claim of a released task
    ((R, H), (R, AWAIT)),  # the handler returned WaitForChildren
    ((R, H), (R, ASK)),  # the handler asked a question that has no answer yet
    ((R, ASK), (R, REL)),  # the answer (or the timeout's default) queues it again
    ((CING, H), (CING, REL)),
    ((CING, REL), (CING, H)),
    ((CING, H), (CING, AWAIT)),
    ((CING, H), (CING, ASK)),
    ((CING, ASK), (CING, REL)),
    *(((R, p), (CING, p)) for p in (H, REL, AWAIT, ASK)),  # a cancel keeps who is to move it on
    *(((s, p), (f, END)) for s in (R, CING) for p in (H, REL, AWAIT, ASK) for f in (DONE, FAIL)),
    *(((CING, p), (CNCL, END)) for p in (H, REL, AWAIT, ASK)),
}
ALL_POINTS = [(state, phase) for state in TaskState for phase in Phase]


def test_every_pair_of_states_and_phases_moves_exactly_as_the_docstring_draws() -> None:
    pairs = itertools.product(ALL_POINTS, ALL_POINTS)
    allowed = {(source, target) for source, target in pairs if can_move(source, target)}
    assert allowed - EXPECTED_MOVES == set()
    assert EXPECTED_MOVES - allowed == set()


def test_each_state_has_its_phases_and_final_states_only_ended() -> None:
    assert STATE_PHASES[W] == {Q, BLK, SCH}
    assert STATE_PHASES[R] == STATE_PHASES[CING] == {H, REL, AWAIT, ASK}
    assert all(STATE_PHASES[final] == {END} for final in FINAL_STATES)
