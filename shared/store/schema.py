"""The database's schema: every index of every collection, made by one migrate step.

`tasklight-server migrate` (what `make run`, the tests and a Kubernetes Job run first) creates the
indexes and brings older documents up to date; the services only check, at start, that every
index is there with the options this version needs, and refuse to start with a message that says
to migrate. So no process races another to build an index while serving.

SecantusDB works through every index of a collection for every document it writes, sparse or
not, so each index of the tasks costs every change of every task: an index a query can do
without is dropped (`RETIRED`). A sparse one costs less for a task that lacks its field, hence
tasks store no `finished_at` until they finish (a claim of a task with five indexes took the
server 0.89 ms instead of 1.0 with that index sparse, measured on batches of ten).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from shared.lifecycle import FINAL_STATES, Phase, TaskState
from shared.store.dispatch_marks import MARK
from shared.store.documents import Doc
from shared.store.reservations import HOLDS
from shared.topology import (
    API_TOKENS,
    FAILED_LOGINS,
    IDEMPOTENCY_KEYS,
    SESSIONS,
    SUBMISSION_COUNTS,
    TASKS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_ENDPOINTS,
    WS_TICKETS,
)

log = logging.getLogger(__name__)

#: Tries at replacing an index that another migrate replaces at the same time.
_INDEX_ATTEMPTS = 10
_INDEX_OPTIONS_CONFLICT = (85, 86)  # IndexOptionsConflict, IndexKeySpecsConflict
_INDEX_NOT_FOUND = 27
#: The options that a change of can only be made by building the index again.
_FLAGS = ("sparse", "unique")


@dataclass(frozen=True)
class Index:
    """One index: its collection, its keys, and the options that matter to queries and TTL."""

    collection: str
    keys: tuple[tuple[str, int], ...]
    sparse: bool = False
    #: Whether no two documents may have the same key (for an array field: share an element).
    unique: bool = False
    #: Seconds after the indexed time at which MongoDB removes the document.
    ttl_s: int | None = None
    #: Why it exists (the query that needs it).
    why: str = field(default="", compare=False)

    def options(self) -> Doc:
        """The options `create_index` takes."""
        options: Doc = {}
        if self.sparse:
            options["sparse"] = True
        if self.unique:
            options["unique"] = True
        if self.ttl_s is not None:
            options["expireAfterSeconds"] = self.ttl_s
        return options

    def __str__(self) -> str:
        keys = ", ".join(f"{name} {direction:+d}" for name, direction in self.keys)
        return f"{self.collection}({keys})"


def indexes(*, retention_s: int, idempotency_ttl_s: int) -> list[Index]:
    """Every index this version of tasklight needs, with the configured TTLs."""
    return [
        Index(TASKS, (("owner", ASCENDING), ("_id", DESCENDING)), why="a user's task list"),
        Index(TASKS, (("state", ASCENDING), ("_id", DESCENDING)), why="lists by state, janitor"),
        Index(TASKS, ((MARK, ASCENDING),), sparse=True, why="the outbox relay"),
        Index(
            TASKS,
            ((HOLDS, ASCENDING),),
            sparse=True,
            unique=True,
            why="a resource is held by one task at a time (only a task holding one has the field)",
        ),
        Index(
            TASKS,
            (("finished_at", ASCENDING),),
            sparse=True,
            ttl_s=retention_s,
            why="finished tasks are removed after the retention time",
        ),
        Index(
            IDEMPOTENCY_KEYS,
            (("created_at", ASCENDING),),
            ttl_s=idempotency_ttl_s,
            why="keys are forgotten after their TTL",
        ),
        Index(
            SUBMISSION_COUNTS,
            (("owner", ASCENDING), ("slot", ASCENDING)),
            why="the users' counts of the last minute",
        ),
        Index(
            SUBMISSION_COUNTS,
            (("expires_at", ASCENDING),),
            ttl_s=0,
            why="counts of slots long past go",
        ),
        Index(API_TOKENS, (("user", ASCENDING),), why="a user's tokens"),
        Index(SESSIONS, (("expires_at", ASCENDING),), ttl_s=0, why="expired sessions go"),
        Index(WS_TICKETS, (("expires_at", ASCENDING),), ttl_s=0, why="expired tickets go"),
        Index(FAILED_LOGINS, (("expires_at", ASCENDING),), ttl_s=0, why="old failures go"),
        Index(
            WEBHOOK_ENDPOINTS, (("owner", ASCENDING), ("_id", DESCENDING)), why="a user's webhooks"
        ),
        Index(
            WEBHOOK_DELIVERIES,
            (("next_attempt_at", ASCENDING),),
            sparse=True,
            why="the sender's due deliveries (only pending ones have the field)",
        ),
        Index(
            WEBHOOK_DELIVERIES,
            (("endpoint_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)),
            why="an endpoint's deliveries, newest first",
        ),
        Index(
            WEBHOOK_DELIVERIES,
            (("expires_at", ASCENDING),),
            ttl_s=0,
            why="deliveries go after the webhook retention time",
        ),
    ]


#: Indexes earlier versions made and this one does without; migrate drops them. Every index
#: costs each write of a task, sparse or not (SecantusDB reads its catalog and works out its
#: keys for every document written): without these two, 0.3-0.4 ms of the server's CPU per
#: task end to end, of about 3. A task's children are read through its `child_ids`, and the
#: questions past their timeout among the started tasks, by the state index.
RETIRED = (
    Index(TASKS, (("parent_id", ASCENDING),), sparse=True),
    Index(TASKS, (("question.deadline", ASCENDING),), sparse=True),
)


class SchemaOutdated(RuntimeError):
    """Indexes are missing or have other options: run `tasklight-server migrate`."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "the database is not migrated to this version of tasklight ("
            + "; ".join(problems)
            + "): run `tasklight-server migrate` (make run and the tests do it first)"
        )
        self.problems = problems


async def check(db: AsyncDatabase[Doc], wanted: list[Index]) -> list[str]:
    """What is missing or different, one line each; empty when every index is as wanted."""
    problems = []
    existing: dict[str, list[Doc]] = {}
    for index in wanted:
        if index.collection not in existing:
            info = await db[index.collection].index_information()
            existing[index.collection] = list(info.values())
        found = _find(existing[index.collection], index)
        if found is None:
            problems.append(f"no index {index}")
        elif not _same_options(found, index):
            problems.append(f"index {index} has other options")
    return problems


async def require(db: AsyncDatabase[Doc], wanted: list[Index]) -> None:
    """Raise `SchemaOutdated` unless every index is as wanted (what each service checks at
    start)."""
    problems = await check(db, wanted)
    if problems:
        raise SchemaOutdated(problems)


async def migrate(db: AsyncDatabase[Doc], wanted: list[Index]) -> list[str]:
    """Create or replace every index, and bring older task documents up to date; what it did,
    one line each. Idempotent, and safe to run while another migrate runs."""
    done = []
    for index in wanted:
        action = await _ensure(db, index)
        if action:
            done.append(f"{action} {index}")
    for index in RETIRED:
        if await _retire(db, index):
            done.append(f"dropped {index}, no longer used")
    phased = await _store_phases(db)
    if phased:
        done.append(f"recorded the phase of {phased} older tasks")
    return done


async def _ensure(db: AsyncDatabase[Doc], index: Index) -> str | None:
    """Create `index`, replacing one on the same keys with other options; None if it was there.

    A change of TTL alone is a `collMod`, with no rebuild; any other change drops the index and
    builds it again. Another migrate may be doing the same: each step that finds the index
    already changed looks again.
    """
    collection = db[index.collection]
    keys = list(index.keys)
    for _ in range(_INDEX_ATTEMPTS):
        found = _find(list((await collection.index_information()).values()), index)
        if found is not None and _same_options(found, index):
            return None
        try:
            if found is None:
                await collection.create_index(keys, **index.options())
                return "created"
            same_flags = (bool(found.get(flag)) == getattr(index, flag) for flag in _FLAGS)
            if index.ttl_s is not None and all(same_flags):
                keyed = {"keyPattern": dict(index.keys), "expireAfterSeconds": index.ttl_s}
                await db.command("collMod", index.collection, index=keyed)
                return "changed the TTL of"
            await collection.drop_index(keys)
        except OperationFailure as exc:
            if exc.code not in (*_INDEX_OPTIONS_CONFLICT, _INDEX_NOT_FOUND):
                raise
    raise RuntimeError(f"the index {index} kept changing; not replaced")


async def _retire(db: AsyncDatabase[Doc], index: Index) -> bool:
    """Drop `index` if it is there; whether this call dropped it (another migrate may have)."""
    collection = db[index.collection]
    if _find(list((await collection.index_information()).values()), index) is None:
        return False
    try:
        await collection.drop_index(list(index.keys))
    except OperationFailure as exc:
        if exc.code != _INDEX_NOT_FOUND:
            raise
        return False
    return True


def _find(existing: list[Doc], index: Index) -> Doc | None:
    keys = [(name, int(direction)) for name, direction in index.keys]
    for info in existing:
        if [(name, int(direction)) for name, direction in info["key"]] == keys:
            return info
    return None


def _same_options(found: Doc, index: Index) -> bool:
    ttl = found.get("expireAfterSeconds")
    same_flags = all(bool(found.get(flag)) == getattr(index, flag) for flag in _FLAGS)
    return same_flags and (
        (ttl is None and index.ttl_s is None)
        or (ttl is not None and index.ttl_s is not None and int(ttl) == index.ttl_s)
    )


async def _store_phases(db: AsyncDatabase[Doc]) -> int:
    """Give tasks stored before phases were their phase, as their fields imply it."""
    tasks = db[TASKS]
    unphased: Doc = {"phase": {"$exists": False}}
    active = [TaskState.RUNNING.value, TaskState.CANCELING.value]
    steps: list[tuple[Doc, Phase]] = [
        ({"state": {"$in": sorted(s.value for s in FINAL_STATES)}}, Phase.ENDED),
        ({"state": TaskState.WAITING.value}, Phase.QUEUED),
        ({"state": {"$in": active}, "awaiting_children": True}, Phase.AWAITING_CHILDREN),
        ({"state": {"$in": active}, "run.id": {"$ne": None}}, Phase.HELD),
        ({"state": {"$in": active}}, Phase.RELEASED),
    ]
    changed = 0
    for query, phase in steps:
        result = await tasks.update_many({**unphased, **query}, {"$set": {"phase": phase.value}})
        changed += result.modified_count
    return changed
