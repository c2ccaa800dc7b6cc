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
from labtrack.domain import timing
from labtrack.domain.actors import Action, Actor, can, require
from labtrack.domain.decisions import check_correction
from labtrack.domain.errors import DomainError, NotFound, ValidationFailed
from labtrack.domain.hashing import jsonable
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import PROCESSES, DataField, FieldKind, TissueSource, validate_step_data
from labtrack.domain.qc import TEXT_TESTS, parse_value
from labtrack.models import Batch, BatchEvent, QcResult
from labtrack.services import batches, deviations, qc
from labtrack.services.streams import append_batch_event

# Data a release was judged on; a correction of it after release goes to QA as a deviation.
RELEASE_INPUTS = ("qc_recorded", "harvest", "concentration")
AFTER_RELEASE = frozenset({Status.RELEASED, Status.DISPATCHED, Status.DELIVERED, Status.ADMINISTERED})
# Identity read off the patient is never "corrected": a wrong patient is a deviation, not a typo.
IDENTITY_FIELDS = ("patient_mrn", "patient_birth_date")


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
    check_correction(actor, original.actor_id)
    if not reason.strip():
        raise ValidationFailed({"reason": ["is required"]})
    if original.type == "qc_recorded":
        changes = _correct_qc(session, batch, actor, original, data)
    elif PROCESSES[TissueSource(batch.tissue_source)].step(original.type) is not None:
        changes = _correct_step(session, batch, original, data)
    else:
        raise ValidationFailed({"event_seq": [f"a {original.type} event cannot be corrected"]})
    event = append_batch_event(
        session,
        batch,
        actor,
        "correction",
        {"corrects_seq": event_seq, "corrected_type": original.type, "reason": reason.strip(), "changes": changes},
    )
    if original.type == "qc_recorded":
        result = session.execute(
            select(QcResult).where(QcResult.batch_id == batch.id, QcResult.entered_seq == event_seq)
        ).scalar_one()
        result.record_seq, result.record_hash = event.seq, event.hash
        session.flush()
        qc.open_if_out_of_spec(session, batch, actor, result)
        qc.advance_after_qc(session, batch)
    elif original.type in ("harvest", "concentration"):
        # weight and final volume set the endotoxin limit
        qc.reevaluate(session, batch, actor, "endotoxin_eu_per_ml")
    if Status(batch.status) in AFTER_RELEASE and original.type in RELEASE_INPUTS:
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
    assert definition is not None
    if any(name in data for name in IDENTITY_FIELDS):
        raise ValidationFailed({"data": ["patient identifiers cannot be corrected; open a deviation"]})
    current = batches.step_values(session, batch, step) or {}
    merged = validate_step_data(definition, current | data)
    if step == "harvest":
        timing.check_harvest_window(merged["started_at"], merged["ended_at"], now=utcnow())
        stability = batch.specification.body.get("stability_hours", 24)
        batch.expires_at = timing.expiry(merged["ended_at"], stability)
    new = jsonable(merged)
    changes = {name: {"old": current.get(name), "new": new[name]} for name in data if current.get(name) != new[name]}
    if not changes:
        raise ValidationFailed({"data": ["changes nothing"]})
    return changes


def _correct_qc(
    session: Session, batch: Batch, actor: Actor, original: BatchEvent, data: dict[str, Any]
) -> dict[str, Any]:
    if set(data) != {"value"}:
        raise ValidationFailed({"data": ['a QC correction gives the new value: {"value": ...}']})
    result = session.execute(
        select(QcResult).where(QcResult.batch_id == batch.id, QcResult.entered_seq == original.seq)
    ).scalar_one()
    value = parse_value(result.test, data["value"])
    if value == result.value["v"]:
        raise ValidationFailed({"data.value": ["changes nothing"]})
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
        definition = process.step(event.type)
        if event.type != "qc_recorded" and definition is None:
            continue
        try:
            check_correction(actor, event.actor_id)
        except DomainError:
            continue
        if definition is None:
            test = event.data["test"]
            kind = FieldKind.TEXT if test in TEXT_TESTS else FieldKind.NUMBER
            fields: tuple[DataField, ...] = (DataField("value", kind, choices=TEXT_TESTS.get(test)),)
            values = {"value": event.data["value"]}
        else:
            fields = tuple(f for f in definition.fields if f.name not in IDENTITY_FIELDS)
            values = dict(event.data.get("values", {}))
        for later in stream:
            if later.type == "correction" and later.data["corrects_seq"] == event.seq:
                values.update({name: change["new"] for name, change in later.data["changes"].items()})
        subject = event.data["test"] if definition is None else event.type
        found.append(Correctable(event.seq, event.type, subject, fields, values))
    return found
