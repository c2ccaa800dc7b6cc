"""Chain of identity (R-COI-1..3): scans and bedside checks, with refusals recorded.

A refused scan rolls back the request, then is itself written as an
``identity_mismatch`` event on the batch (who, what was scanned) in a transaction
of its own, so QA sees near-misses.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.din import parse_din
from labtrack.domain.errors import IdentityMismatch, ValidationFailed
from labtrack.models import Batch, BatchEvent
from labtrack.services import outbox
from labtrack.services.streams import append_batch_event


def _refusal(batch: Batch, actor: Actor, detail: str, attempt: dict[str, Any]) -> IdentityMismatch:
    error = IdentityMismatch(detail, attempt=attempt)
    batch_id = batch.id

    def record(session: Session) -> None:
        locked = (
            session.execute(select(Batch).where(Batch.id == batch_id).with_for_update(of=Batch)).unique().scalar_one()
        )
        event = append_batch_event(session, locked, actor, "identity_mismatch", attempt)
        outbox.enqueue(session, "identity.mismatch", locked, attempt | {"actor": actor.username, "seq": event.seq})

    error.record = record
    return error


def check_scan(batch: Batch, actor: Actor, scanned_din: str | None, action: str) -> None:
    """R-COI-1: the DIN read off the container must be this batch's (any R-DIN-3 form)."""
    if not scanned_din:
        raise ValidationFailed({"scanned_din": ["scan the DIN on the container"]})
    scanned = parse_din(scanned_din)
    if scanned.value != batch.din:
        raise _refusal(
            batch,
            actor,
            f"The container scanned ({scanned.value}) is not batch {batch.din}.",
            {"action": action, "check": "container", "scanned": scanned_din, "expected_din": batch.din},
        )


def check_patient(batch: Batch, actor: Actor, mrn: str, birth_date: date, action: str) -> None:
    """R-COI-2/3: MRN and birth date read from the patient must both match the batch's patient."""
    patient = batch.patient
    wrong = [
        name
        for name, ok in (
            ("patient_mrn", mrn.strip() == patient.mrn),
            ("patient_birth_date", birth_date == patient.birth_date),
        )
        if not ok
    ]
    if wrong:
        raise _refusal(
            batch,
            actor,
            f"The patient identifiers ({', '.join(wrong)}) do not match the batch's patient.",
            {
                "action": action,
                "check": "patient",
                "mismatched": wrong,
                "scanned": {"patient_mrn": mrn, "patient_birth_date": birth_date.isoformat()},
            },
        )


def recent_mismatches(session: Session, actor: Actor, limit: int = 20) -> list[tuple[BatchEvent, str]]:
    """The latest refused identity checks across batches with their DINs, newest first: near-misses for QA."""
    require(actor, Action.LIST_DEVIATIONS)
    query = (
        select(BatchEvent, Batch.din)
        .join(Batch, Batch.id == BatchEvent.batch_id)
        .where(BatchEvent.type == "identity_mismatch")
        .order_by(BatchEvent.id.desc())
        .limit(limit)
    )
    return [(event, din) for event, din in session.execute(query).unique()]
