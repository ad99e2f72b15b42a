"""A worker's lease on its tasks, as the worker itself sees it: pure, no I/O.

The heartbeat renews the lease (`lease_until` on the worker's document, `lease_s` after the
renewal was sent); the janitors of all workers treat a worker whose lease is past as lost and
take its tasks. So that no task runs twice at once, the worker stops its tasks (self-fencing)
before anyone may take them: once no renewal of its has been answered for `fence_after_s`, one
renewal interval short of the lease. Times here are monotonic seconds of this process.
"""

from __future__ import annotations

from dataclasses import dataclass


def fence_after_s(lease_s: float, renew_s: float) -> float:
    """Seconds after its last answered renewal was sent at which a worker stops its tasks: one
    renewal interval before the lease expires (a margin for clock skew between workers and for
    handlers to stop)."""
    return lease_s - renew_s


def fenced(now: float, renewed_at: float, *, lease_s: float, renew_s: float) -> bool:
    """Whether a worker whose last answered renewal was sent at `renewed_at` must have stopped
    its tasks at `now`."""
    return now - renewed_at >= fence_after_s(lease_s, renew_s)


@dataclass
class LeaseClock:
    """When this worker's lease was last renewed, and whether it stands fenced."""

    lease_s: float
    renew_s: float
    #: When the last renewal that the database answered was sent; None before the first.
    renewed_at: float | None = None

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at `sent_at` was answered (an older answer arriving late changes
        nothing)."""
        if self.renewed_at is None or sent_at > self.renewed_at:
            self.renewed_at = sent_at

    def fenced(self, now: float) -> bool:
        """Whether the worker must not run tasks at `now`: never renewed, or not for too long."""
        if self.renewed_at is None:
            return True
        return fenced(now, self.renewed_at, lease_s=self.lease_s, renew_s=self.renew_s)
