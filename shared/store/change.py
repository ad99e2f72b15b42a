"""One change of a stored task, described once and compiled into the two forms MongoDB runs.

A `Change` says what a verb of `shared/runs.py` does to a task: from which states (and phases) it
may start, the state and phase it leaves, what else it sets, appends and counts, and which run
must hold the task. It compiles into

- `compare_and_set(task_id)`: the filter and update for a writer that does not know the task's
  version. A change of state is an update pipeline, which reads the state being replaced and the
  version from the task itself (for the `history` entry it appends);
- `at_version(source, version)`: a plain update for a writer that knows the task is at
  `version` (and so in `source`). It has no per-task parts, so the same change of many tasks is
  one `update_many` (see grouping.py), and a plain update costs SecantusDB less than a pipeline.

A change of state made with `history=False` appends no `history` entry: both forms are then plain
updates that only set, count and append what the change names. That is for the last write a task
gets when its document refuses the usual one (`Runs.park`): the entry is the part of a change of
state that depends on what the document holds.

A change to a final state also removes the task's `holds` (the resources it holds by key, see
`shared/store/reservations.py`).

Both forms leave the same document (a test applies each to the same task and compares them).
Every change moves the version on; the notifier pushes a change because its version moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel

from shared.lifecycle import (
    FINAL_STATES,
    STATE_PHASES,
    IllegalTransition,
    Phase,
    TaskState,
    can_move,
    phase_after,
)
from shared.store.documents import Doc
from shared.store.reservations import HOLDS


class Unguarded(Enum):
    """The run guard of a change that any run, or none, may make."""

    ANY_RUN = "any run"


ANY_RUN = Unguarded.ANY_RUN


@dataclass(frozen=True)
class Change:
    """A compare-and-set change of one task; raises `IllegalTransition` if the lifecycle forbids
    any of the moves it describes."""

    #: The states it may start from.
    sources: frozenset[TaskState]
    #: The state it leaves the task in; None: the state stays.
    target: TaskState | None = None
    #: The phases it may start from; None: any phase of the sources.
    phases: frozenset[Phase] | None = None
    #: The phase it leaves the task in; None: unchanged (`ended` for a final target).
    phase: Phase | None = None
    #: Top-level fields it sets (pydantic models are stored as their fields).
    fields: Mapping[str, Any] = field(default_factory=dict)
    #: One element appended to each of these array fields.
    push: Mapping[str, Any] = field(default_factory=dict)
    #: Counters it adds to.
    inc: Mapping[str, int] = field(default_factory=dict)
    #: Fields it removes.
    unset: frozenset[str] = frozenset()
    #: The run that must hold the task (None: no run may hold it); `ANY_RUN`: not checked.
    run_id: str | Unguarded | None = ANY_RUN
    #: Further conditions on top-level fields, as MongoDB filter parts.
    guard: Mapping[str, Any] = field(default_factory=dict)
    #: Who made it and why, for the `history` entry of a change of state.
    worker: str | None = None
    reason: str | None = None
    #: Whether a change of state appends its entry to `history` (see the module's docstring).
    history: bool = True

    def __post_init__(self) -> None:
        if not self.sources:
            raise IllegalTransition("a change needs at least one source state")
        if any("." in key or key.startswith("$") for key in self._written_keys()):
            raise ValueError("a change writes whole top-level fields only")
        for source in self.sources:
            for phase in self.phases or STATE_PHASES[source]:
                if phase not in STATE_PHASES[source]:
                    continue
                target = self._target_of(source, phase)
                if target != (source, phase) and not can_move((source, phase), target):
                    raise IllegalTransition(f"{source}/{phase} → {target[0]}/{target[1]}")

    def _written_keys(self) -> list[str]:
        return [*self.fields, *self.push, *self.inc, *self.unset]

    def _target_of(self, source: TaskState, phase: Phase) -> tuple[TaskState, Phase]:
        state = self.target or source
        new_phase = phase_after(state, self.phase) if self.target else self.phase
        return state, new_phase or phase

    # --- compiled forms -------------------------------------------------------------------

    def compare_and_set(self, task_id: str, at: datetime) -> tuple[Doc, Doc | list[Doc]]:
        """The filter and update that make this change if the task is still where it may start."""
        query: Doc = {"_id": task_id, **self._guards()}
        query["state"] = {"$in": sorted(s.value for s in self.sources)}
        if self.phases is not None:
            query["phase"] = {"$in": sorted(p.value for p in self.phases)}
        if self.target is None or not self.history:
            return query, self._plain(at, history=None)
        new_version = {"$add": ["$version", 1]}
        entry = {
            "source": "$state",
            "target": self.target.value,
            "version": new_version,
            "at": {"$literal": at},
            "worker": {"$literal": self.worker},
            "reason": {"$literal": self.reason},
        }
        stage: Doc = {key: {"$literal": value} for key, value in self._sets(at).items()}
        stage["version"] = new_version
        stage["history"] = {"$concatArrays": [{"$ifNull": ["$history", []]}, [entry]]}
        for key, value in self._pushes().items():
            stage[key] = {"$concatArrays": [{"$ifNull": [f"${key}", []]}, [{"$literal": value}]]}
        for key, by in self.inc.items():
            stage[key] = {"$add": [{"$ifNull": [f"${key}", 0]}, by]}
        pipeline: list[Doc] = [{"$set": stage}]
        if removed := self._removed():
            pipeline.append({"$unset": sorted(removed)})
        return query, pipeline

    def version_filter(self, version: int) -> Doc:
        """The filter (without `_id`) of `at_version`: the version implies the state, the phase
        and the run, since every change moves it on. The run guard stays all the same, so a
        run changes only a task it holds even when its caller is wrong about the version.

        Nothing else: SecantusDB plans each field of a filter, so every field named costs every
        shared statement (0.1 ms per task of a batch of five, measured)."""
        return {"version": version, **self._guards()}

    def at_version(self, source: TaskState, version: int, at: datetime) -> Doc:
        """The plain update of this change for a task known to be at `version`, in `source`."""
        if source not in self.sources:
            raise IllegalTransition(f"{source} is not a source of this change")
        history = None
        if self.target is not None and self.history:
            history = {
                "source": source.value,
                "target": self.target.value,
                "version": version + 1,
                "at": at,
                "worker": self.worker,
                "reason": self.reason,
            }
        return self._plain(at, history)

    # --- parts ----------------------------------------------------------------------------

    def _guards(self) -> Doc:
        guards = dict(self.guard)
        if self.run_id is not ANY_RUN:
            guards["run.id"] = self.run_id
        return guards

    def _sets(self, at: datetime) -> Doc:
        sets: Doc = {"updated_at": at}
        if self.target is not None:
            sets["state"] = self.target.value
            if self.target is TaskState.RUNNING:
                sets["started_at"] = at
            if self.target in FINAL_STATES:
                sets["finished_at"] = at
        new_phase = phase_after(self.target, self.phase) if self.target else self.phase
        if new_phase is not None:
            sets["phase"] = new_phase.value
        sets.update({key: stored(value) for key, value in self.fields.items()})
        return sets

    def _pushes(self) -> Doc:
        return {key: stored(value) for key, value in self.push.items()}

    def _plain(self, at: datetime, history: Doc | None) -> Doc:
        update: Doc = {"$set": self._sets(at), "$inc": {"version": 1, **self.inc}}
        pushes = self._pushes()
        if history is not None:
            pushes["history"] = history
        if pushes:
            update["$push"] = pushes
        if removed := self._removed():
            update["$unset"] = {key: "" for key in sorted(removed)}
        return update

    def _removed(self) -> frozenset[str]:
        # The write that ends a task gives up the resources it holds by key, in the same
        # statement: so no task in a final state holds one, whatever ended it.
        if self.target in FINAL_STATES:
            return self.unset | {HOLDS}
        return self.unset


def stored(value: Any) -> Any:
    """`value` as a document holds it: models as their fields (times stay BSON dates)."""
    if isinstance(value, BaseModel):
        return stored(value.model_dump(mode="python", by_alias=True))
    if isinstance(value, list | tuple):
        return [stored(item) for item in value]
    if isinstance(value, Mapping):
        return {key: stored(item) for key, item in value.items()}
    if isinstance(value, Enum):
        return value.value
    return value
