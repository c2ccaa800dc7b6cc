"""Release blockers and clinic readiness (R-REL-1, R-RDY-1).

Each blocker has a stable code so a client can act on it and a sentence a person
can read; readiness and release report the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labtrack.domain.lifecycle import BatchState, Status

READY_STATUSES = frozenset({Status.RELEASED, Status.DISPATCHED, Status.DELIVERED})


@dataclass(frozen=True)
class Blocker:
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


def readiness_blockers(state: BatchState, *, now: datetime, open_deviation_ids: list[int]) -> list[Blocker]:
    """Why a batch is not ready for the clinic; empty means ready (R-RDY-1)."""
    blockers: list[Blocker] = []
    if state.status not in READY_STATUSES:
        blockers.append(
            Blocker(f"not_ready:{state.status.value}", f"The batch is {state.status.value.replace('_', ' ')}.")
        )
    blockers.extend(
        Blocker(f"open_deviation:{dev_id}", f"Deviation {dev_id} is open; the batch is held.")
        for dev_id in open_deviation_ids
    )
    if state.is_expired(now):
        when = state.expires_at.isoformat() if state.expires_at else "earlier"
        blockers.append(Blocker("expired", f"The product expired ({when})."))
    return blockers
