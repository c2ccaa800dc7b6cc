"""Where a batch stands on its way from harvest to administration: the stepper on the card and in the record.

Eight stages, each done once the batch's status has reached it. A batch that stopped
(rejected, expired, discarded) shows the stages it completed, read from the steps it
logged and its release, and where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labtrack.domain.lifecycle import Status

ORDER = (
    Status.REGISTERED,
    Status.COLLECTED,
    Status.IN_TRANSIT,
    Status.RECEIVED,
    Status.PROCESSING,
    Status.PROCESSED,
    Status.AWAITING_RELEASE,
    Status.RELEASED,
    Status.DISPATCHED,
    Status.DELIVERED,
    Status.ADMINISTERED,
)
# (stage, the status from which it is done)
STAGES = (
    ("Harvest", Status.COLLECTED),
    ("At the lab", Status.RECEIVED),
    ("Processing", Status.PROCESSED),
    ("QC", Status.AWAITING_RELEASE),
    ("Release", Status.RELEASED),
    ("Dispatch", Status.DISPATCHED),
    ("Delivery", Status.DELIVERED),
    ("Administration", Status.ADMINISTERED),
)
STOPPED = frozenset({Status.REJECTED, Status.EXPIRED, Status.DISCARDED})


@dataclass(frozen=True)
class Stage:
    name: str
    state: str  # "done", "current", "todo" or "stopped"


def _reached(status: Status, steps_done: tuple[str, ...], released_at: datetime | None) -> int:
    """How far along ``ORDER`` the batch got (for a stopped batch, from what it logged)."""
    if status not in STOPPED:
        return ORDER.index(status)
    if released_at is not None:
        return ORDER.index(Status.RELEASED)
    if len(steps_done) > 1:
        return ORDER.index(Status.PROCESSING)
    return ORDER.index(Status.COLLECTED) if steps_done else ORDER.index(Status.REGISTERED)


def stages(status: Status, steps_done: tuple[str, ...] = (), released_at: datetime | None = None) -> list[Stage]:
    """The eight stages with their state: done ones, the current one (or where it stopped), the rest to do."""
    reached = _reached(status, steps_done, released_at)
    out: list[Stage] = []
    marked = False
    for name, done_at in STAGES:
        if reached >= ORDER.index(done_at):
            out.append(Stage(name, "done"))
        elif not marked:
            out.append(Stage(name, "stopped" if status in STOPPED else "current"))
            marked = True
        else:
            out.append(Stage(name, "todo"))
    return out
