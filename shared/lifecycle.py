"""The task lifecycle: its states, their named sub-states (phases), and the one table of changes.

States, and the changes allowed between them (a finished task never changes state again)::

    waiting ──▶ running ──▶ completed | failed
       │  │        │
       │  ▼        ▼
       │ failed   canceling ──▶ canceled | completed | failed
       ▼
    canceled

`waiting → failed` is for a task whose command can never be delivered (it was dead-lettered): it
fails without pretending that it started.

Within a state, a task is in one phase, which says who is to move it on::

    waiting    queued              its command is in the broker; the next worker to take it runs it
                                   (one that took its resources by key and finds others queued
                                   for them before its command goes is blocked behind them)
               blocked             it waits for a resource another task holds (`waiting_for`);
                                   no command is in flight: the holder's end gives it its turn
               scheduled           it waits for its time (`run_at`); the relay queues it then
    running    held                a run on a live worker holds it and will record how it ended
    canceling  released            no run holds it; its command is queued again (a retry, a
                                   hand-back, a lost worker's requeue), and the next run takes it
               awaiting_children   its handler returned; it ends when its last child has
               awaiting_answer     its handler asked its owner a question (`ctx.ask`); the
                                   answer (or the question's timeout) queues it again
    final      ended

The phase is stored in the task (`phase`), set by the same compare-and-set as the state, so a
query names a sub-state instead of a combination of fields. This module is pure: the writes that
make these changes are `shared/runs.py`'s verbs, compiled by `shared/store/`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class TaskState(StrEnum):
    """Where a task is in its life."""

    #: Stored and queued; no worker has started it.
    WAITING = "waiting"
    #: A worker started it, and it has not ended.
    RUNNING = "running"
    #: Cancel was asked after it started; it stops at its handler's next checkpoint.
    CANCELING = "canceling"
    #: The handler returned; `result` holds what it returned.
    COMPLETED = "completed"
    #: The handler raised, or the task could not run; `error` says why.
    FAILED = "failed"
    #: Canceled before it ran, or stopped at a checkpoint after a cancel.
    CANCELED = "canceled"


class Phase(StrEnum):
    """A task's sub-state: who is to move it on next."""

    #: Waiting: its command is queued for the next free worker.
    QUEUED = "queued"
    #: Waiting: for a resource that a conflicting task holds or waits for first.
    BLOCKED = "blocked"
    #: Waiting: for its time (`run_at`).
    SCHEDULED = "scheduled"
    #: Running or canceling: a run on a live worker holds it.
    HELD = "held"
    #: Running or canceling: no run holds it; its command is queued again.
    RELEASED = "released"
    #: Running or canceling: its handler returned; it ends when its children have.
    AWAITING_CHILDREN = "awaiting_children"
    #: Running or canceling: its handler asked a question; no run holds it until the answer.
    AWAITING_ANSWER = "awaiting_answer"
    #: In a final state.
    ENDED = "ended"


class TaskGroup(StrEnum):
    """The three tabs of the background-tasks dialog."""

    PENDING = "pending"
    FAILED = "failed"
    FINISHED = "finished"


FINAL_STATES: frozenset[TaskState] = frozenset(
    {TaskState.COMPLETED, TaskState.FAILED, TaskState.CANCELED}
)
#: Started and not ended: the states in which a run may hold a task.
ACTIVE_STATES: frozenset[TaskState] = frozenset({TaskState.RUNNING, TaskState.CANCELING})

ALLOWED_CHANGES: Mapping[TaskState, frozenset[TaskState]] = {
    TaskState.WAITING: frozenset({TaskState.RUNNING, TaskState.CANCELED, TaskState.FAILED}),
    TaskState.RUNNING: frozenset({TaskState.CANCELING, TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.CANCELING: frozenset({TaskState.CANCELED, TaskState.COMPLETED, TaskState.FAILED}),
    TaskState.COMPLETED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELED: frozenset(),
}

_STARTED_PHASES = frozenset(
    {Phase.HELD, Phase.RELEASED, Phase.AWAITING_CHILDREN, Phase.AWAITING_ANSWER}
)
#: The phases each state may be in.
STATE_PHASES: Mapping[TaskState, frozenset[Phase]] = {
    TaskState.WAITING: frozenset({Phase.QUEUED, Phase.BLOCKED, Phase.SCHEDULED}),
    TaskState.RUNNING: _STARTED_PHASES,
    TaskState.CANCELING: _STARTED_PHASES,
    **{state: frozenset({Phase.ENDED}) for state in FINAL_STATES},
}

#: Changes of phase within an active state (a change of state may also change the phase).
ALLOWED_PHASE_CHANGES: Mapping[Phase, frozenset[Phase]] = {
    # Its resources are all its own: its command is queued.
    Phase.BLOCKED: frozenset({Phase.QUEUED}),
    # It took its resources by key, and found others queued for them before its command went.
    Phase.QUEUED: frozenset({Phase.BLOCKED}),
    # Its time came: queued, or waiting for its resources.
    Phase.SCHEDULED: frozenset({Phase.QUEUED, Phase.BLOCKED}),
    Phase.HELD: frozenset({Phase.RELEASED, Phase.AWAITING_CHILDREN, Phase.AWAITING_ANSWER}),
    Phase.RELEASED: frozenset({Phase.HELD}),
    Phase.AWAITING_CHILDREN: frozenset(),
    # Answered (or timed out with a default): queued again, for a run that replays the handler.
    Phase.AWAITING_ANSWER: frozenset({Phase.RELEASED}),
}

GROUP_STATES: Mapping[TaskGroup, frozenset[TaskState]] = {
    TaskGroup.PENDING: frozenset({TaskState.WAITING, TaskState.RUNNING, TaskState.CANCELING}),
    TaskGroup.FAILED: frozenset({TaskState.FAILED, TaskState.CANCELED}),
    TaskGroup.FINISHED: frozenset({TaskState.COMPLETED}),
}

#: The version of a task as stored by its submission.
FIRST_VERSION = 1


class IllegalTransition(ValueError):
    """A change that the lifecycle forbids was asked for: a bug in the caller, not a race."""


def can_change(source: TaskState, target: TaskState) -> bool:
    """Whether a task in `source` may move to `target`."""
    return target in ALLOWED_CHANGES[source]


def can_move(source: tuple[TaskState, Phase], target: tuple[TaskState, Phase]) -> bool:
    """Whether a task at (state, phase) `source` may move to (state, phase) `target`.

    A change of state keeps the phase (a cancel asked of a held run leaves it held) unless it
    starts the task (queued → held) or ends it (→ ended); within a state only the phase changes
    of `ALLOWED_PHASE_CHANGES` are allowed.
    """
    (state, phase), (new_state, new_phase) = source, target
    if phase not in STATE_PHASES[state] or new_phase not in STATE_PHASES[new_state]:
        return False
    if state == new_state:
        return new_phase in ALLOWED_PHASE_CHANGES.get(phase, frozenset())
    if not can_change(state, new_state):
        return False
    if new_state in FINAL_STATES:
        return True
    if state is TaskState.WAITING:
        return phase is Phase.QUEUED and new_phase is Phase.HELD
    return new_phase == phase


def group_of(state: TaskState) -> TaskGroup:
    """The dialog tab a task in `state` is shown under."""
    return next(group for group, states in GROUP_STATES.items() if state in states)


def phase_after(target: TaskState, phase: Phase | None) -> Phase | None:
    """The phase a change to `target` leaves the task in: `ended` for a final state, else
    `phase` (None: unchanged)."""
    return Phase.ENDED if target in FINAL_STATES else phase
