"""tasklight's Python client: submit background tasks and follow them live.

`TasklightClient` (async) and `SyncTasklightClient` (blocking) call the REST API and wait on the
notifier's push; `tasklight` (the CLI) and the pytest plugin (`tasklight_wait_all`) use them.
"""

from tasklight.client import ConnectionStatus, TasklightClient
from tasklight.errors import (
    ApiError,
    NotFound,
    TasklightError,
    Unauthorized,
    Unreachable,
    WaitTimeout,
)
from tasklight.sync import SyncTasklightClient
from tasklight.types import FINAL_STATES, GROUPS, Task, is_final

__all__ = [
    "FINAL_STATES",
    "GROUPS",
    "ApiError",
    "ConnectionStatus",
    "NotFound",
    "SyncTasklightClient",
    "Task",
    "TasklightClient",
    "TasklightError",
    "Unauthorized",
    "Unreachable",
    "WaitTimeout",
    "is_final",
]
