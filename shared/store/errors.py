"""The errors the store raises, named for what a caller does about them."""

from __future__ import annotations

from pymongo.errors import (
    ConnectionFailure,
    ExecutionTimeout,
    OperationFailure,
    PyMongoError,
    WTimeoutError,
)

#: Any failure of a database command: a lost connection, a timeout, a refused write.
DatabaseError = PyMongoError


#: The database did not answer (not reachable, or the connection was lost).
DatabaseUnreachable = ConnectionFailure

#: The server answered and refused the command (a document it cannot store, say).
DatabaseRefused = OperationFailure

#: The server gave up on a command that ran past its time limit (it may have been applied).
DatabaseTimeout = ExecutionTimeout


class ResourcesTaken(Exception):
    """A task could not be stored holding its resources by key: another task holds one."""

    def __init__(self, resource: str | None) -> None:
        super().__init__(f"{resource or 'a resource'} is held by another task")
        self.resource = resource


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a write that raised `exc` may have been applied all the same (the connection
    was lost, or the server timed out): its outcome must be read back before anything is
    decided on it."""
    return isinstance(exc, DatabaseUnreachable | DatabaseTimeout | WTimeoutError)


#: Server error codes meaning "this change stream's resume token is no longer usable", for both
#: streams of the tasks: 286 ChangeStreamHistoryLost, 280 ChangeStreamFatalError, 260
#: InvalidResumeToken, 9 FailedToParse (a token the server cannot read).
HISTORY_LOST_CODES = frozenset({286, 280, 260, 9})


def history_lost(exc: BaseException) -> bool:
    """Whether a change stream that raised `exc` cannot resume where it was: what happened
    since must be read from the tasks themselves."""
    return isinstance(exc, OperationFailure) and exc.code in HISTORY_LOST_CODES


def unreachable(exc: BaseException) -> bool:
    """Whether a command that raised `exc` failed for want of the database: it did not answer,
    or not in time. Such a failure says nothing about the command itself (a refused command
    does): it is for trying again once the database answers."""
    return isinstance(exc, DatabaseUnreachable) or outcome_unknown(exc)
