"""Release blockers and clinic readiness (R-REL-1, R-REL-2, R-RDY-1).

Each blocker has a stable code so a client can act on it and a sentence a person
can read; release and readiness report from the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from labtrack.domain import quantities
from labtrack.domain.lifecycle import BatchState, Status
from labtrack.domain.process import Performer
from labtrack.domain.qc import STERILITY, STERILITY_PENDING

READY_STATUSES = frozenset({Status.RELEASED, Status.DISPATCHED, Status.DELIVERED})
BEFORE_RELEASE = frozenset(
    {
        Status.REGISTERED,
        Status.COLLECTED,
        Status.IN_TRANSIT,
        Status.RECEIVED,
        Status.PROCESSING,
        Status.PROCESSED,
        Status.AWAITING_RELEASE,
    }
)


@dataclass(frozen=True)
class Blocker:
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class QcView:
    """What release needs to know of one QC result."""

    id: int
    test: str
    value: float | str
    within_spec: bool
    verified: bool
    covered_by_accepted_deviation: bool = False
    unit: str | None = None
    limit: str | None = None  # the limit it was judged by, as stored ("≥ 70 and ≤ 100")


def release_result(results: list[QcView], test: str) -> QcView | None:
    """The result that counts toward release: for sterility, the sample's `pending` record."""
    candidates = [r for r in results if r.test == test]
    if test == STERILITY:
        candidates = [r for r in candidates if r.value == STERILITY_PENDING] or candidates
    return candidates[-1] if candidates else None


def qc_blockers(required: list[str], results: list[QcView]) -> list[Blocker]:
    blockers: list[Blocker] = []
    for test in required:
        result = release_result(results, test)
        if result is None:
            blockers.append(Blocker(f"qc_missing:{test}", f"No {test} result has been recorded."))
            continue
        if not result.within_spec and not result.covered_by_accepted_deviation:
            blockers.append(Blocker(f"qc_out_of_spec:{test}", _out_of_spec(result)))
        if not result.verified:
            blockers.append(
                Blocker(f"qc_unverified:{test}", f"The {test} result awaits a second person's verification.")
            )
    return blockers


def _out_of_spec(result: QcView) -> str:
    """The result and the limit it misses: "The cd34_pct result 1.2 % is out of spec (limit ≥ 2 %)."."""
    said = quantities.quantity(result.value, result.unit)
    missed = f" (limit {quantities.limit(result.limit, result.unit)})" if result.limit else ""
    return f"The {result.test} result {said} is out of spec{missed}."


def all_required_verified(required: list[str], results: list[QcView]) -> bool:
    """R-QC-4: every required test has a verified result (out-of-spec ones are a release matter)."""
    return all((r := release_result(results, test)) is not None and r.verified for test in required)


def sterility_cleared(results: list[QcView]) -> bool:
    """R-REL-2: a final sterility result within spec has been verified; until then a release is conditional."""
    return any(r.test == STERILITY and r.value != STERILITY_PENDING and r.within_spec and r.verified for r in results)


def status_after_qc(status: Status, required: list[str], results: list[QcView]) -> Status:
    """R-QC-4: processed -> awaiting_release once every required test has a verified result, and back when a
    correction or a new limit takes a verification away; any other status stays."""
    complete = all_required_verified(required, results)
    if status == Status.PROCESSED and complete:
        return Status.AWAITING_RELEASE
    if status == Status.AWAITING_RELEASE and not complete:
        return Status.PROCESSED
    return status


def _not_yet(state: BatchState, stage: str) -> Blocker:
    """The batch has not reached ``stage``: said as a stage still to come, never as news that reads as good."""
    return Blocker(
        f"not_ready:{state.status.value}", f"The batch is {state.status.value.replace('_', ' ')}, not yet {stage}."
    )


def release_blockers(
    state: BatchState,
    *,
    now: datetime,
    required: list[str],
    results: list[QcView],
    open_deviation_ids: list[int],
    releaser_took_part: bool,
) -> list[Blocker]:
    """Every reason QA may not release now (R-REL-1), all at once."""
    blockers: list[Blocker] = []
    if state.status != Status.AWAITING_RELEASE:
        blockers.append(_not_yet(state, "awaiting release"))
    blockers.extend(qc_blockers(required, results))
    blockers.extend(_deviation_blockers(open_deviation_ids))
    if state.custodian_side != Performer.LAB or state.transfer is not None:
        blockers.append(Blocker("custody_not_at_lab", "The batch is not in the lab's custody."))
    if state.is_expired(now):
        blockers.append(_expired(state))
    if releaser_took_part:
        blockers.append(Blocker("segregation_of_duties", "You performed or verified a step or result on this batch."))
    return blockers


def readiness_blockers(
    state: BatchState, *, now: datetime, required: list[str], results: list[QcView], open_deviation_ids: list[int]
) -> list[Blocker]:
    """Why a batch is not ready for the clinic; empty means ready (R-RDY-1)."""
    blockers: list[Blocker] = []
    if state.status not in READY_STATUSES:
        blockers.append(_not_yet(state, "released"))
    if state.status in BEFORE_RELEASE:
        blockers.extend(qc_blockers(required, results))
    blockers.extend(_deviation_blockers(open_deviation_ids))
    if state.is_expired(now):
        blockers.append(_expired(state))
    return blockers


def _deviation_blockers(open_deviation_ids: list[int]) -> list[Blocker]:
    return [Blocker(f"open_deviation:{i}", f"Deviation {i} is open; the batch is held.") for i in open_deviation_ids]


def _expired(state: BatchState) -> Blocker:
    when = state.expires_at.isoformat() if state.expires_at else "earlier"
    return Blocker("expired", f"The product expired ({when}).")
