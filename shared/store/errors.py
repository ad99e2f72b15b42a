"""The errors the store raises, named for what a caller does about them."""

from __future__ import annotations

from pymongo.errors import ConnectionFailure, ExecutionTimeout, PyMongoError, WTimeoutError

#: Any failure of a database command: a lost connection, a timeout, a refused write.
DatabaseError = PyMongoError


def outcome_unknown(exc: BaseException) -> bool:
    """Whether a write that raised `exc` may have been applied all the same (the connection
    was lost, or the server timed out): its outcome must be read back before anything is
    decided on it."""
    return isinstance(exc, ConnectionFailure | ExecutionTimeout | WTimeoutError)


#: The database did not answer (not reachable, or the connection was lost).
DatabaseUnreachable = ConnectionFailure


def unreachable(exc: BaseException) -> bool:
    """Whether a command that raised `exc` failed for want of the database: it did not answer,
    or not in time. Such a failure says nothing about the command itself (a refused command
    does): it is for trying again once the database answers."""
    return isinstance(exc, DatabaseUnreachable) or outcome_unknown(exc)
