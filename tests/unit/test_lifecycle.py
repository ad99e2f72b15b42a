"""The lifecycle allows exactly the documented changes, and nothing leaves a final state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from shared.lifecycle import (
    FINAL_STATES,
    GROUP_STATES,
    IllegalTransition,
    TaskGroup,
    TaskState,
    can_change,
    group_of,
    transition_write,
)

W, R, CING, DONE, FAIL, CNCL = (
    TaskState.WAITING,
    TaskState.RUNNING,
    TaskState.CANCELING,
    TaskState.COMPLETED,
    TaskState.FAILED,
    TaskState.CANCELED,
)

#: Written out independently of shared/lifecycle.py, from the README's lifecycle sentence.
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
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_every_pair_of_states_is_allowed_exactly_when_the_design_allows_it(
    source: TaskState, target: TaskState
) -> None:
    assert can_change(source, target) == ((source, target) in EXPECTED_ALLOWED)


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS)
def test_the_write_for_a_pair_exists_only_for_allowed_pairs(
    source: TaskState, target: TaskState
) -> None:
    if (source, target) in EXPECTED_ALLOWED:
        query, update = transition_write("t1", [source], target, at=AT)
        assert query == {"_id": "t1", "state": {"$in": [source.value]}}
        [stage] = update
        assert stage["$set"]["state"] == {"$literal": target.value}
        assert stage["$set"]["version"] == {"$add": ["$version", 1]}
        [event] = stage["$set"]["history"]["$concatArrays"][1]
        assert (event["source"], event["target"]) == ("$state", target.value)
    else:
        with pytest.raises(IllegalTransition):
            transition_write("t1", [source], target, at=AT)


def test_final_states_allow_no_change_at_all() -> None:
    assert {DONE, FAIL, CNCL} == FINAL_STATES
    for final, other in itertools.product(FINAL_STATES, TaskState):
        assert not can_change(final, other)


def test_a_write_stamps_started_at_on_running_and_finished_at_on_a_final_state() -> None:
    _, to_running = transition_write("t1", [W], R, at=AT)
    _, to_done = transition_write("t1", [R, CING], DONE, at=AT)
    running_set, done_set = to_running[0]["$set"], to_done[0]["$set"]
    assert running_set["started_at"] == {"$literal": AT}
    assert "finished_at" not in running_set
    assert done_set["finished_at"] == {"$literal": AT}
    assert done_set["updated_at"] == {"$literal": AT}


def test_a_write_from_several_sources_is_refused_if_any_one_is_illegal() -> None:
    with pytest.raises(IllegalTransition):
        transition_write("t1", [R, W], CING, at=AT)


def test_a_guard_narrows_the_filter_and_fields_are_set_with_the_state() -> None:
    query, update = transition_write(
        "t1", [R], FAIL, at=AT, fields={"error": {"type": "x"}}, guard={"run.id": "r1"}
    )
    assert query["run.id"] == "r1"
    # Literal: a result or error holding "$..." strings must not be read as an expression.
    assert update[0]["$set"]["error"] == {"$literal": {"type": "x"}}


def test_dotted_fields_are_refused_because_the_store_derives_the_new_document_from_them() -> None:
    with pytest.raises(ValueError, match="top-level"):
        transition_write("t1", [R], DONE, at=AT, fields={"worker.name": "w"})


def test_the_three_dialog_groups_partition_the_states_as_seed_002_shows_them() -> None:
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
