"""Corrections (Part 11 §11.10(e), Annex 11 §8.2; R-COR-1).

A correction is a new event naming the corrected event, the changed values (old and
new) and a reason; the original stays in the stream untouched. A corrected QC value
is evaluated again and needs a new verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import corrections as rules
from labtrack.domain import timing
from labtrack.domain.actors import Action, Actor, can, require
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import jsonable
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import PROCESSES, DataField, TissueSource, validate_step_data
from labtrack.domain.qc import parse_value
from labtrack.models import Batch, BatchEvent, QcResult
from labtrack.services import batches, deviations, qc
from labtrack.services.streams import append_batch_event


def correct(
    session: Session, actor: Actor, din: str, *, event_seq: int, reason: str, data: dict[str, Any]
) -> BatchEvent:
    """Correct a step's values or a QC result; by the one who recorded it, or by QA."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.CORRECT, batch.clinic_id, what="batch")
    original = session.execute(
        select(BatchEvent).where(BatchEvent.batch_id == batch.id, BatchEvent.seq == event_seq)
    ).scalar_one_or_none()
    if original is None:
        raise NotFound(f"No event {event_seq} on this batch.")
    process = PROCESSES[TissueSource(batch.tissue_source)]
    rules.check_correction(actor, process, original.type, original.actor_id, reason, data)
    if original.type == rules.QC_RESULT:
        changes = _correct_qc(session, batch, actor, original, data)
    else:
        changes = _correct_step(session, batch, original, data)
    event = append_batch_event(
        session,
        batch,
        actor,
        "correction",
        {"corrects_seq": event_seq, "corrected_type": original.type, "reason": reason.strip(), "changes": changes},
    )
    if original.type == rules.QC_RESULT:
        result = session.execute(
            select(QcResult).where(QcResult.batch_id == batch.id, QcResult.entered_seq == event_seq)
        ).scalar_one()
        result.record_seq, result.record_hash = event.seq, event.hash
        session.flush()
        qc.open_if_out_of_spec(session, batch, actor, result)
        qc.advance_after_qc(session, batch)
    elif original.type in rules.LIMIT_INPUTS:
        qc.reevaluate(session, batch, actor, rules.LIMIT_INPUTS[original.type])
    if rules.needs_review(Status(batch.status), original.type):
        # The release was signed on the data as it stood: QA reviews the change before the product moves on.
        deviations.open_on(
            session,
            batch,
            actor,
            "manual",
            f"Correction after release (seq {event.seq} corrects seq {event_seq}, {original.type}): "
            f"{reason.strip()}. QA must review it before the product is dispatched or administered.",
        )
    return event


def _correct_step(session: Session, batch: Batch, original: BatchEvent, data: dict[str, Any]) -> dict[str, Any]:
    step = original.type
    definition = PROCESSES[TissueSource(batch.tissue_source)].step(step)
    assert definition is not None  # rules.check_correction refused otherwise
    current = batches.step_values(session, batch, step) or {}
    merged = validate_step_data(definition, current | data)
    if step == "harvest":
        timing.check_harvest_window(merged["started_at"], merged["ended_at"], now=utcnow())
        stability = batch.specification.body.get("stability_hours", 24)
        batch.expires_at = timing.expiry(merged["ended_at"], stability)
    return rules.step_changes(current, jsonable(merged), data)


def _correct_qc(
    session: Session, batch: Batch, actor: Actor, original: BatchEvent, data: dict[str, Any]
) -> dict[str, Any]:
    result = session.execute(
        select(QcResult).where(QcResult.batch_id == batch.id, QcResult.entered_seq == original.seq)
    ).scalar_one()
    value = parse_value(result.test, data["value"])
    rules.check_value_changes(result.value["v"], value)
    evaluation = qc.evaluate_for(session, batch, result.test, value)
    changes = {"value": {"old": result.value["v"], "new": value}}
    if evaluation.within_spec != result.within_spec:
        changes["within_spec"] = {"old": result.within_spec, "new": evaluation.within_spec}
    if result.original_value is None:
        result.original_value = result.value
    result.value = {"v": value}
    result.within_spec = evaluation.within_spec
    result.limit = evaluation.limit
    result.corrected = True
    result.entered_by_id = actor.id  # the person who entered the value now standing
    result.verified_by_id = result.verified_at = result.verified_seq = None
    return changes


@dataclass(frozen=True)
class Correctable:
    """An entry ``actor`` may correct (R-COR-1), with the values standing now, for a correction form."""

    seq: int
    type: str  # qc_recorded or a step's name
    subject: str  # what it records: the QC test, or the step
    fields: tuple[DataField, ...]
    values: dict[str, Any]


def correctable(actor: Actor, batch: Batch, stream: list[BatchEvent]) -> list[Correctable]:
    """The entries of ``batch`` (its ``stream``) that ``actor`` may correct now: their own steps and QC results,
    or any, for QA."""
    if not can(actor, Action.CORRECT, batch.clinic_id):
        return []
    process = PROCESSES[TissueSource(batch.tissue_source)]
    found = []
    for event in stream:
        if not rules.may_correct(actor, process, event.type, event.actor_id):
            continue
        definition = process.step(event.type)
        if definition is None:
            fields = rules.correctable_fields(None, event.data["test"])
            values = {"value": event.data["value"]}
        else:
            fields = rules.correctable_fields(definition)
            values = dict(event.data.get("values", {}))
        for later in stream:
            if later.type == "correction" and later.data["corrects_seq"] == event.seq:
                values.update({name: change["new"] for name, change in later.data["changes"].items()})
        subject = event.data["test"] if definition is None else event.type
        found.append(Correctable(event.seq, event.type, subject, fields, values))
    return found
