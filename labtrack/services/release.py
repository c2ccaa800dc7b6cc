"""QA's decisions: release, rejection and deviation disposition, all signed (R-REL-1..3, R-DEV-2),
and the clinic's view of readiness (R-RDY-1)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CompoundSelect, null, select, union_all
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import lifecycle
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import check_reject, check_release
from labtrack.domain.deviations import DeviationStatus, Disposition
from labtrack.domain.errors import Conflict, NotFound, ValidationFailed
from labtrack.domain.lifecycle import TERMINAL, Status
from labtrack.domain.qc import required_tests
from labtrack.domain.release import QcView, readiness_blockers, sterility_cleared
from labtrack.domain.signatures import Meaning
from labtrack.models import Batch, BatchEvent, Deviation
from labtrack.services import batches, decisions, deviations, outbox, qc, signatures
from labtrack.services.streams import append_batch_event


def open_deviation_ids(session: Session, batch: Batch) -> list[int]:
    """The ids of the batch's open deviations, oldest first."""
    return list(
        session.execute(select(Deviation.id).where(deviations.is_open_on(batch.id)).order_by(Deviation.id)).scalars()
    )


def _qc_and_open_deviations() -> CompoundSelect:
    unused = [null()] * 7  # the QC view's columns after its id
    open_deviations = select(Deviation.id, *unused).where(deviations.is_open_on(deviations.BATCH_ID))
    both = union_all(qc.view_query(), open_deviations)
    return both.order_by(both.selected_columns.id)


_QC_AND_OPEN = _qc_and_open_deviations()  # built once, as ``qc.views``'s statement


def qc_and_open_deviations(session: Session, batch: Batch) -> tuple[list[QcView], list[int]]:
    """``qc.views`` and ``open_deviation_ids`` in one round trip: a UNION ALL whose deviation rows
    carry only their id (a QC result always has a test)."""
    rows = session.execute(_QC_AND_OPEN, {"batch_id": batch.id}).all()
    return [qc.view_of(row) for row in rows if row.test is not None], [row.id for row in rows if row.test is None]


def readiness(session: Session, batch: Batch) -> dict[str, Any]:
    """R-RDY-1: ready for the clinic, or every reason why not."""
    results, open_deviations = qc_and_open_deviations(session, batch)
    blockers = readiness_blockers(
        lifecycle.state_of(batch),
        now=utcnow(),
        required=required_tests(batch.specification.body),
        results=results,
        open_deviation_ids=open_deviations,
    )
    return {
        "din": batch.din,
        "status": batch.status,
        "ready": not blockers,
        "held": batch.held,
        "expires_at": batch.expires_at,
        "released_at": batch.released_at,
        "conditional_release": batch.conditional_release,
        "custodian": batch.custodian,
        "blockers": [b.as_dict() for b in blockers],
    }


def release(session: Session, actor: Actor, din: str, *, signature: dict[str, Any]) -> Batch:
    """QA releases with meaning `approved`, or is told every blocker at once (R-REL-1)."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.RELEASE, batch.clinic_id, what="batch")
    check_release(actor, decisions.facts(session, batch))
    signed = signatures.sign(session, actor, signature, Meaning.APPROVED, batch.head_hash, batch)
    conditional = not sterility_cleared(qc.views(session, batch))
    event = append_batch_event(
        session, batch, actor, "released", {"conditional_release": conditional, "signature": signed}
    )
    batch.status = Status.RELEASED.value
    batch.released_at = event.recorded_at
    batch.conditional_release = conditional
    outbox.enqueue(session, "batch.released", batch, {"conditional_release": conditional, "seq": event.seq})
    return batch


def reject(session: Session, actor: Actor, din: str, *, reason: str, signature: dict[str, Any]) -> Batch:
    """QA rejects with meaning `rejected` and a reason; terminal (R-REL-3)."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.RELEASE, batch.clinic_id, what="batch")
    check_reject(lifecycle.state_of(batch))
    if not reason.strip():
        raise ValidationFailed({"reason": ["is required"]})
    signed = signatures.sign(session, actor, signature, Meaning.REJECTED, batch.head_hash, batch)
    _reject(session, batch, actor, {"reason": reason.strip(), "signature": signed})
    return batch


def _reject(session: Session, batch: Batch, actor: Actor, data: dict[str, Any]) -> None:
    event = append_batch_event(session, batch, actor, "rejected", data)
    batch.status = Status.REJECTED.value
    outbox.enqueue(session, "batch.rejected", batch, {"seq": event.seq, "reason": data.get("reason")})


def dispose(
    session: Session,
    actor: Actor,
    deviation_id: int,
    *,
    decision: str,
    justification: str,
    signature: dict[str, Any],
) -> Deviation:
    """R-DEV-2: QA closes a deviation, accept (use as is) or reject (the batch is rejected), signed."""
    require(actor, Action.DISPOSITION)
    found = session.get(Deviation, deviation_id)
    if found is None:
        raise NotFound("No such deviation.")
    batch = batches.get(session, actor, found.batch.din, for_update=True)
    deviation = session.get(Deviation, deviation_id, populate_existing=True)
    assert deviation is not None
    if deviation.status != DeviationStatus.OPEN:
        raise Conflict(f"Deviation {deviation_id} is already closed ({deviation.decision}).")
    if not justification.strip():
        raise ValidationFailed({"justification": ["is required"]})
    opened = session.execute(
        select(BatchEvent.hash).where(BatchEvent.batch_id == batch.id, BatchEvent.seq == deviation.opened_seq)
    ).scalar_one()
    signed = signatures.sign(session, actor, signature, Meaning.APPROVED, opened, batch)
    event = append_batch_event(
        session,
        batch,
        actor,
        "deviation_closed",
        {
            "deviation_id": deviation.id,
            "decision": decision,
            "justification": justification.strip(),
            "signature": signed,
        },
    )
    deviation.status = DeviationStatus.CLOSED.value
    deviation.decision = decision
    deviation.justification = justification.strip()
    deviation.closed_by_id = actor.id
    deviation.closed_at = event.recorded_at
    deviation.signature = signed
    session.flush()
    session.refresh(deviation, ["closed_by"])  # the response names who closed it; the FK alone leaves it stale
    batch.held = bool(open_deviation_ids(session, batch))
    if decision == Disposition.REJECT and Status(batch.status) not in TERMINAL:
        _reject(session, batch, actor, {"reason": f"deviation {deviation.id} rejected", "deviation_id": deviation.id})
    return deviation
