"""A `Change` compiles into MongoDB's two forms, and refuses what the lifecycle forbids."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.lifecycle import ACTIVE_STATES, IllegalTransition, Phase, TaskState
from shared.store.change import Change

W, R, CING, DONE, FAIL = (
    TaskState.WAITING,
    TaskState.RUNNING,
    TaskState.CANCELING,
    TaskState.COMPLETED,
    TaskState.FAILED,
)
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_change_the_lifecycle_forbids_is_refused_when_it_is_described() -> None:
    with pytest.raises(IllegalTransition):
        Change(sources=frozenset({DONE}), target=R)
    with pytest.raises(IllegalTransition):
        Change(sources=frozenset({R, W}), target=CING)  # waiting may not become canceling
    with pytest.raises(IllegalTransition):
        Change(sources=frozenset({W}), phase=Phase.RELEASED)  # a waiting task is only queued
    with pytest.raises(IllegalTransition):
        Change(sources=frozenset())


def test_the_compare_and_set_filters_on_the_sources_phases_and_run_and_reads_the_state() -> None:
    change = Change(sources=ACTIVE_STATES, target=DONE, phases=frozenset({Phase.HELD}), run_id="r1")
    query, update = change.compare_and_set("t1", AT)
    assert query == {
        "_id": "t1",
        "state": {"$in": ["canceling", "running"]},
        "phase": {"$in": ["held"]},
        "run.id": "r1",
    }
    assert isinstance(update, list)
    stage = update[0]["$set"]
    assert stage["state"] == {"$literal": "completed"}
    assert stage["phase"] == {"$literal": "ended"}
    assert stage["version"] == {"$add": ["$version", 1]}
    [entry] = stage["history"]["$concatArrays"][1]
    assert (entry["source"], entry["target"]) == ("$state", "completed")


def test_a_change_stamps_started_at_on_running_and_finished_at_on_a_final_state() -> None:
    _, to_running = Change(
        sources=frozenset({W}), target=R, phases=frozenset({Phase.QUEUED}), phase=Phase.HELD
    ).compare_and_set("t1", AT)
    _, to_done = Change(sources=ACTIVE_STATES, target=DONE).compare_and_set("t1", AT)
    assert isinstance(to_running, list)
    assert isinstance(to_done, list)
    running_set, done_set = to_running[0]["$set"], to_done[0]["$set"]
    assert running_set["started_at"] == {"$literal": AT}
    assert "finished_at" not in running_set
    assert done_set["finished_at"] == {"$literal": AT}
    assert done_set["updated_at"] == {"$literal": AT}


def test_fields_are_stored_as_literals_so_user_text_is_never_an_expression() -> None:
    change = Change(sources=frozenset({R}), target=FAIL, fields={"error": {"type": "$x"}})
    _, update = change.compare_and_set("t1", AT)
    assert isinstance(update, list)
    assert update[0]["$set"]["error"] == {"$literal": {"type": "$x"}}


def test_dotted_or_operator_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="top-level"):
        Change(sources=frozenset({R}), target=DONE, fields={"worker.name": "w"})
    with pytest.raises(ValueError, match="top-level"):
        Change(sources=frozenset({R}), push={"$where": 1})


def test_the_known_version_form_is_a_plain_update_naming_only_the_version_and_run() -> None:
    change = Change(
        sources=ACTIVE_STATES,
        target=DONE,
        phases=frozenset({Phase.HELD}),
        run_id="r1",
        fields={"result": 7},
        inc={"runs": 1},
        unset=frozenset({"dispatch_due_at"}),
    )
    assert change.version_filter(4) == {"version": 4, "run.id": "r1"}
    update = change.at_version(R, 4, AT)
    assert update["$set"]["state"] == "completed"
    assert update["$set"]["result"] == 7
    assert update["$inc"] == {"version": 1, "runs": 1}
    assert update["$push"]["history"]["source"] == "running"
    assert update["$push"]["history"]["version"] == 5
    # An end also gives up the resources the task holds by key.
    assert update["$unset"] == {"dispatch_due_at": "", "holds": ""}
    with pytest.raises(IllegalTransition):
        change.at_version(W, 4, AT)


def test_a_change_of_phase_only_is_a_plain_update_with_no_history_entry() -> None:
    change = Change(sources=frozenset({R}), phases=frozenset({Phase.HELD}), phase=Phase.RELEASED)
    query, update = change.compare_and_set("t1", AT)
    assert isinstance(update, dict)
    assert update["$set"]["phase"] == "released"
    assert "$push" not in update
    assert query["phase"] == {"$in": ["held"]}


def test_a_change_of_state_without_history_is_the_same_plain_update_in_both_forms() -> None:
    # The last write of a task whose document refuses the usual one: it names only what it
    # sets and counts, nothing it reads from the document.
    change = Change(sources=frozenset({W, R}), target=FAIL, fields={"error": None}, history=False)
    query, update = change.compare_and_set("t1", AT)
    assert query == {"_id": "t1", "state": {"$in": ["running", "waiting"]}}
    assert update == {
        "$set": {
            "updated_at": AT,
            "state": "failed",
            "finished_at": AT,
            "phase": "ended",
            "error": None,
        },
        "$inc": {"version": 1},
        # The end gives up the resources the task holds by key.
        "$unset": {"holds": ""},
    }
    assert change.at_version(W, 3, AT) == update
