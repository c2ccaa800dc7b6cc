"""QC results: entry with the sample in hand, evaluation, second-person verification (R-QC-1..5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import timing
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import Conflict, CustodyViolation, Forbidden, InvalidTransition, NotFound
from labtrack.domain.investigations import Activity
from labtrack.domain.lifecycle import Status, allowed_actions
from labtrack.domain.process import Performer
from labtrack.domain.qc import STERILITY, STERILITY_PENDING, Evaluation, evaluate, parse_value, required_tests
from labtrack.domain.release import QcView, all_required_verified
from labtrack.domain.signatures import Meaning
from labtrack.models import Batch, Deviation, QcResult
from labtrack.services import batches, deviations, outbox, signatures, uses
from labtrack.services.steps import in_hand
from labtrack.services.streams import append_batch_event

QC_ENTRY_STATUSES = frozenset({Status.PROCESSED, Status.AWAITING_RELEASE})


def results(session: Session, batch: Batch) -> list[QcResult]:
    return list(session.execute(select(QcResult).where(QcResult.batch_id == batch.id).order_by(QcResult.id)).scalars())


def view_query(batch: Batch) -> Select:
    """The columns release reads of each QC result, and whether an accepted deviation covers it."""
    covered = (
        select(Deviation.id)
        .where(
            Deviation.batch_id == QcResult.batch_id,
            Deviation.qc_result_id == QcResult.id,
            Deviation.decision == "accept",
        )
        .exists()
    )
    return select(
        QcResult.id, QcResult.test, QcResult.value, QcResult.within_spec, QcResult.verified_by_id.is_not(None), covered
    ).where(QcResult.batch_id == batch.id)


def view_of(row: Row) -> QcView:
    id_, test, value, within_spec, verified, covered = row
    return QcView(id_, test, value["v"], within_spec, verified, covered)


def views(session: Session, batch: Batch) -> list[QcView]:
    """QC results as release sees them, out-of-spec ones marked when an accepted deviation covers them
    (one query of the columns release reads: no result rows, no joined users)."""
    return [view_of(row) for row in session.execute(view_query(batch).order_by(QcResult.id))]


def evaluate_for(session: Session, batch: Batch, test: str, value: float | str) -> Evaluation:
    """Evaluate against the batch's own specification version, with its final volume and weight."""
    harvest = batches.step_values(session, batch, "harvest") or {}
    concentration = batches.step_values(session, batch, "concentration") or {}
    return evaluate(
        test,
        value,
        batch.specification.body,
        final_volume_ml=concentration.get("final_volume_ml"),
        weight_kg=harvest.get("weight_kg"),
    )


def open_if_out_of_spec(session: Session, batch: Batch, actor: Actor, result: QcResult) -> None:
    """R-QC-2 / R-QC-5: an out-of-spec result opens a deviation; a positive culture is urgent."""
    if result.within_spec:
        return
    value = result.value["v"]
    if result.test == STERILITY:
        deviations.open_on(
            session,
            batch,
            actor,
            "sterility_positive",
            f"Sterility culture: {value}. Follow up with the clinic and the patient.",
            qc_result_id=result.id,
        )
        outbox.enqueue(session, "sterility.positive", batch, {"qc_result_id": result.id, "status": batch.status})
        return
    deviations.open_on(
        session,
        batch,
        actor,
        "qc_out_of_spec",
        f"{result.test} = {value} is out of spec ({result.limit}).",
        qc_result_id=result.id,
    )


def record(
    session: Session,
    actor: Actor,
    din: str,
    *,
    scanned_din: str | None,
    test: str,
    value: Any,
    method: str | None = None,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> QcResult:
    """Record one QC result with the sample in hand (R-COI-1) and evaluate it (R-QC-2)."""
    batch, state = in_hand(session, actor, din, scanned_din, Action.QC_ENTRY, "qc")
    parsed = parse_value(test, value)
    existing = [r for r in results(session, batch) if r.test == test]
    final_sterility = test == STERILITY and parsed != STERILITY_PENDING
    if final_sterility:
        # R-CUS-3's exception: the 14-day culture is recorded whenever it comes, wherever the batch is.
        if not any(r.value["v"] == STERILITY_PENDING for r in existing):
            raise InvalidTransition(
                "Record the sterility sample (value 'pending') before its final result.",
                allowed=allowed_actions(state),
            )
        if any(r.value["v"] != STERILITY_PENDING for r in existing):
            raise Conflict("The final sterility result is already recorded; correct it if it is wrong.")
    else:
        if state.transfer is not None:
            raise CustodyViolation("A custody hand-off is pending: the recipient must receive the batch first.")
        if state.status not in QC_ENTRY_STATUSES:
            raise InvalidTransition(
                f"QC results are recorded once processing is done; the batch is {state.status.value}.",
                allowed=allowed_actions(state),
            )
        if state.custodian_side != Performer.LAB:
            raise CustodyViolation("QC results need the batch in lab custody.")
        if existing:
            raise Conflict(f"A {test} result is already recorded; submit a correction to change it.")
    now = utcnow()
    occurred_at = occurred_at or now
    timing.check_occurred_at(
        occurred_at,
        now=now,
        last_physical_at=None if final_sterility else state.last_physical_at,
        late_entry_reason=late_entry_reason,
    )
    evaluation = evaluate_for(session, batch, test, parsed)
    data: dict[str, Any] = {
        "test": test,
        "value": parsed,
        "unit": evaluation.unit,
        "method": method,
        "within_spec": evaluation.within_spec,
        "limit": evaluation.limit,
        "specification_version": batch.specification.version,
        "scanned_din": scanned_din,
    }
    if late_entry_reason:
        data["late_entry_reason"] = late_entry_reason.strip()
    event = append_batch_event(session, batch, actor, "qc_recorded", data, occurred_at=occurred_at, recorded_at=now)
    uses.record(session, event, Activity.QC_ENTRY)
    result = QcResult(
        batch_id=batch.id,
        test=test,
        value={"v": parsed},
        unit=evaluation.unit,
        method=method,
        within_spec=evaluation.within_spec,
        limit=evaluation.limit,
        entered_by_id=actor.id,
        entered_at=now,
        entered_seq=event.seq,
        record_seq=event.seq,
        record_hash=event.hash,
    )
    session.add(result)
    if not final_sterility:
        batch.last_physical_at = max(occurred_at, state.last_physical_at or occurred_at)
    session.flush()
    open_if_out_of_spec(session, batch, actor, result)
    return result


def get(session: Session, batch: Batch, qc_id: int) -> QcResult:
    result = session.get(QcResult, qc_id)
    if result is None or result.batch_id != batch.id:
        raise NotFound("No such QC result on this batch.")
    return result


def verify(session: Session, actor: Actor, din: str, qc_id: int, *, signature: dict[str, Any]) -> QcResult:
    """R-QC-3: a second person verifies with an electronic signature bound to the result's record."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.QC_VERIFY, batch.clinic_id, what="batch")
    result = get(session, batch, qc_id)
    if result.verified_by_id is not None:
        raise Conflict("This result is already verified.")
    if result.entered_by_id == actor.id:
        raise Forbidden("A result is verified by a second person, not the one who entered it (R-QC-3).")
    signed = signatures.sign(session, actor, signature, Meaning.VERIFIED, result.record_hash, batch)
    event = append_batch_event(
        session,
        batch,
        actor,
        "qc_verified",
        {"qc_result_id": result.id, "test": result.test, "record_seq": result.record_seq, "signature": signed},
    )
    uses.record(session, event, Activity.QC_VERIFICATION)
    result.verified_by_id = actor.id
    result.verified_at = event.recorded_at
    result.verified_seq = event.seq
    session.flush()
    session.refresh(result, ["verified_by"])  # the response names the verifier; the FK alone leaves it stale
    advance_after_qc(session, batch)
    if result.test == STERILITY and result.value["v"] != STERILITY_PENDING and result.within_spec:
        batch.conditional_release = False
    return result


def reevaluate(session: Session, batch: Batch, actor: Actor, test: str) -> None:
    """After a correction changed what a limit depends on: evaluate again; a result whose verdict or limit
    changed is no longer verified, since its verifier checked it against another limit."""
    for result in results(session, batch):
        if result.test != test:
            continue
        evaluation = evaluate_for(session, batch, test, result.value["v"])
        if (evaluation.within_spec, evaluation.limit) == (result.within_spec, result.limit):
            continue
        result.within_spec, result.limit = evaluation.within_spec, evaluation.limit
        result.verified_by_id = result.verified_at = result.verified_seq = None
        session.flush()
        open_if_out_of_spec(session, batch, actor, result)
    advance_after_qc(session, batch)


def advance_after_qc(session: Session, batch: Batch) -> None:
    """R-QC-4: processed -> awaiting_release once every required test has a verified result, and back."""
    complete = all_required_verified(required_tests(batch.specification.body), views(session, batch))
    if batch.status == Status.PROCESSED and complete:
        batch.status = Status.AWAITING_RELEASE.value
    elif batch.status == Status.AWAITING_RELEASE and not complete:
        batch.status = Status.PROCESSED.value
