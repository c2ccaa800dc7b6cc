"""QC results: entry with the sample in hand, evaluation, second-person verification (R-QC-1..5)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Exists, Row, Select, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import timing
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import ResultFacts, check_qc_entry, check_verify
from labtrack.domain.deviations import Disposition
from labtrack.domain.errors import NotFound, ValidationFailed
from labtrack.domain.investigations import Activity
from labtrack.domain.lifecycle import TERMINAL, BatchState, Status
from labtrack.domain.qc import (
    Evaluation,
    evaluate,
    out_of_spec,
    parse_value,
    required_tests,
)
from labtrack.domain.release import QcView, status_after_qc, sterility_cleared
from labtrack.domain.signatures import Meaning
from labtrack.models import Batch, Deviation, QcResult
from labtrack.services import batches, deviations, outbox, signatures, uses
from labtrack.services.steps import in_hand
from labtrack.services.streams import append_batch_event


def results(session: Session, batch: Batch) -> list[QcResult]:
    """The batch's QC results, in the order they were entered."""
    return list(session.execute(select(QcResult).where(QcResult.batch_id == batch.id).order_by(QcResult.id)).scalars())


def covered_by_accepted_deviation() -> Exists:
    """SQL for a QC result row: whether a deviation on it was accepted (R-DEV-2: it no longer blocks release)."""
    return (
        select(Deviation.id)
        .where(
            Deviation.batch_id == QcResult.batch_id,
            Deviation.qc_result_id == QcResult.id,
            Deviation.decision == Disposition.ACCEPT.value,
        )
        .exists()
    )


def view_query() -> Select:
    """The columns release reads of each QC result, and whether an accepted deviation covers it, of the batch
    whose id is bound as ``deviations.BATCH_ID``."""
    covered = covered_by_accepted_deviation()
    return select(
        QcResult.id,
        QcResult.test,
        QcResult.value,
        QcResult.within_spec,
        QcResult.verified_by_id.is_not(None),
        covered,
        QcResult.unit,
        QcResult.limit,
    ).where(QcResult.batch_id == deviations.BATCH_ID)


_VIEWS = view_query().order_by(QcResult.id)  # built once: building it per request cost more than running it


def view_of(row: Row) -> QcView:
    """A QC result row as the release rules read it."""
    id_, test, value, within_spec, verified, covered, unit, limit = row
    return QcView(id_, test, value["v"], within_spec, verified, covered, unit, limit)


def views(session: Session, batch: Batch) -> list[QcView]:
    """QC results as release sees them, out-of-spec ones marked when an accepted deviation covers them
    (one query of the columns release reads: no result rows, no joined users)."""
    return [view_of(row) for row in session.execute(_VIEWS, {"batch_id": batch.id})]


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
    found = out_of_spec(result.test, result.value["v"], result.limit)
    deviations.open_on(session, batch, actor, found.kind, found.description, qc_result_id=result.id)
    if found.urgent:
        outbox.enqueue(session, "sterility.positive", batch, {"qc_result_id": result.id, "status": batch.status})


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
    entry = Entry(test, value, method, scanned_din, occurred_at, late_entry_reason)
    return _record(session, actor, batch, state, entry)


def record_panel(
    session: Session,
    actor: Actor,
    din: str,
    *,
    scanned_din: str | None,
    results: list[dict[str, Any]],
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> list[QcResult]:
    """Record several QC results of one sample after one scan (R-COI-1), all or none.

    A refused value is named by its test (``results.<test>.value``), so a form can show it
    beside the field it came from.
    """
    batch, state = in_hand(session, actor, din, scanned_din, Action.QC_ENTRY, "qc")
    tests = [item["test"] for item in results]
    if not results or len(set(tests)) != len(tests):
        raise ValidationFailed({"results": ["give each test at most once, and at least one"]})
    recorded = []
    for item in results:
        entry = Entry(item["test"], item["value"], item.get("method"), scanned_din, occurred_at, late_entry_reason)
        try:
            recorded.append(_record(session, actor, batch, state, entry))
        except ValidationFailed as error:
            named = {f"results.{entry.test}.{name}": messages for name, messages in (error.errors or {}).items()}
            raise ValidationFailed(named) from None
    return recorded


@dataclass(frozen=True)
class Entry:
    test: str
    value: Any
    method: str | None
    scanned_din: str | None
    occurred_at: datetime | None
    late_entry_reason: str | None


def _record(session: Session, actor: Actor, batch: Batch, state: BatchState, entry: Entry) -> QcResult:
    test, value, method, scanned_din = entry.test, entry.value, entry.method, entry.scanned_din
    occurred_at, late_entry_reason = entry.occurred_at, entry.late_entry_reason
    parsed = parse_value(test, value)
    existing = [r.value["v"] for r in results(session, batch) if r.test == test]
    final_sterility = check_qc_entry(state, test, parsed, existing)
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
    """One QC result of this batch; 404 for a result of another batch."""
    result = session.get(QcResult, qc_id)
    if result is None or result.batch_id != batch.id:
        raise NotFound("No such QC result on this batch.")
    return result


def verify(session: Session, actor: Actor, din: str, qc_id: int, *, signature: dict[str, Any]) -> QcResult:
    """R-QC-3: a second person verifies with an electronic signature bound to the result's record."""
    return verify_many(session, actor, din, [qc_id], signature=signature)[0]


def verify_many(
    session: Session, actor: Actor, din: str, qc_ids: list[int], *, signature: dict[str, Any]
) -> list[QcResult]:
    """R-QC-3, R-SIG-3: verify one or several results of a batch with one signature.

    One password entry, one ``qc_verified`` event. The manifestation binds the record hash of
    the result it signs; signing several, it lists each result it covers with that result's
    record hash, and binds the hash of that list.
    """
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.QC_VERIFY, batch.clinic_id, what="batch")
    if not qc_ids or len(set(qc_ids)) != len(qc_ids):
        raise ValidationFailed({"qc_ids": ["name each result to verify once"]})
    chosen = [get(session, batch, qc_id) for qc_id in qc_ids]
    for result in chosen:
        check_verify(actor, result_facts(result))
    if len(chosen) == 1:
        (result,) = chosen
        signed = signatures.sign(session, actor, signature, Meaning.VERIFIED, result.record_hash, batch)
        data = {"qc_result_id": result.id, "test": result.test, "record_seq": result.record_seq}
    else:
        covers = [
            {"qc_result_id": r.id, "test": r.test, "record_seq": r.record_seq, "record_hash": r.record_hash}
            for r in chosen
        ]
        signed = signatures.sign(session, actor, signature, Meaning.VERIFIED, covered_hash(covers), batch)
        signed["covers"] = covers
        data = {"qc_result_ids": [r.id for r in chosen], "tests": [r.test for r in chosen]}
    event = append_batch_event(session, batch, actor, "qc_verified", data | {"signature": signed})
    uses.record(session, event, Activity.QC_VERIFICATION)
    for result in chosen:
        result.verified_by_id = actor.id
        result.verified_at = event.recorded_at
        result.verified_seq = event.seq
    session.flush()
    for result in chosen:
        session.refresh(result, ["verified_by"])  # the response names the verifier; the FK alone leaves it stale
    advance_after_qc(session, batch)
    if sterility_cleared([result_facts(r).view() for r in chosen]):
        batch.conditional_release = False
    return chosen


def covered_hash(covers: list[dict[str, Any]]) -> str:
    """The hash a several-result signature binds: SHA-256 over each covered result's id and record hash."""
    lines = "\n".join(f"{c['qc_result_id']}:{c['record_hash']}" for c in covers)
    return hashlib.sha256(lines.encode()).hexdigest()


def result_facts(result: QcResult) -> ResultFacts:
    """A QC result as the entry and verification rules read it."""
    return ResultFacts(
        result.id,
        result.test,
        result.value["v"],
        result.within_spec,
        result.entered_by_id,
        result.verified_by_id,
        result.record_hash,
        unit=result.unit,
        limit=result.limit,
    )


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
    after = status_after_qc(Status(batch.status), required_tests(batch.specification.body), views(session, batch))
    if after != batch.status:
        batch.status = after.value


def awaiting_verification(session: Session, actor: Actor, limit: int = 100) -> list[tuple[QcResult, str]]:
    """QC results not yet verified, with their batch's DIN, on batches not yet closed, oldest first: QA's
    queue (R-QC-3)."""
    require(actor, Action.QC_VERIFY)
    query = (
        select(QcResult, Batch.din)
        .join(Batch, Batch.id == QcResult.batch_id)
        .where(QcResult.verified_by_id.is_(None), Batch.status.not_in([s.value for s in TERMINAL]))
        .order_by(QcResult.id)
        .limit(limit)
    )
    return [(result, din) for result, din in session.execute(query).unique()]
