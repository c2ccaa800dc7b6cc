"""Adverse reactions (R-ADV-1..4): reported on an administered batch, assessed, closed by QA, signed.

Each report and closing is an event on the batch's own chain; ``adverse_reactions`` is
their projection. A reaction involving a communicable disease opens a lookback seeded
with its batch (R-ADV-4), written by the ``system`` user in the same unit of work.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.documents.adverse_reaction import WorksheetView
from labtrack.documents.record import manifestation_text
from labtrack.domain.actors import Action, Actor, require, sees_clinic
from labtrack.domain.din import Din
from labtrack.domain.errors import Conflict, NotAdministered, NotFound, ValidationFailed
from labtrack.domain.hashing import iso_utc
from labtrack.domain.investigations import (
    Assessment,
    Category,
    Criteria,
    ReactionOutcome,
    ReactionStatus,
    Relatedness,
    SeedKind,
    Trigger,
    Window,
    assess,
    check_closing,
    check_report,
)
from labtrack.domain.lifecycle import Status
from labtrack.domain.signatures import Meaning
from labtrack.models import AdverseReaction, Batch, BatchEvent, BatchUse, ReagentLot
from labtrack.services import batches, lookbacks, outbox, scope, signatures
from labtrack.services.streams import append_batch_event
from labtrack.services.watchers import watcher_actor


def today_in(zone: str, now: datetime | None = None) -> date:
    """The lab's calendar day: the 15 days of 21 CFR 1271.350(a) are calendar days where the lab is."""
    return (now or utcnow()).astimezone(ZoneInfo(zone)).date()


def _tell_and_look_back(
    session: Session, actor: Actor, batch: Batch, reaction: AdverseReaction, assessment: Assessment
) -> None:
    """The clinic and QA are told of the report; an infection or a suspected communicable disease opens a
    lookback seeded with the batch (R-ADV-4), written by ``system`` in the report's own transaction."""
    outbox.enqueue(
        session,
        "adverse_reaction.reported",
        batch,
        {
            "reaction_id": reaction.id,
            "category": reaction.category,
            "serious": assessment.serious,
            "reportable": assessment.reportable,
            "report_due_on": assessment.report_due_on.isoformat() if assessment.report_due_on else None,
        },
    )
    if assessment.opens_lookback:
        lookback = lookbacks.open_lookback(
            session,
            watcher_actor(session),
            kind=SeedKind.BATCH,
            value=batch.din,
            reason=f"Adverse reaction {reaction.id} ({reaction.category.replace('_', ' ')}) after administration",
            window=Window(None, None),
            trigger=Trigger.ADVERSE_REACTION,
            requested_by=actor.username,
        )
        reaction.lookback_id = lookback.id


def _administered_at(session: Session, batch: Batch) -> datetime | None:
    return session.execute(
        select(func.max(BatchEvent.occurred_at)).where(
            BatchEvent.batch_id == batch.id, BatchEvent.type == "administration"
        )
    ).scalar_one()


def report(
    session: Session,
    actor: Actor,
    din: str,
    *,
    onset_at: datetime,
    category: str,
    description: str,
    outcome: str,
    fatal: bool,
    life_threatening: bool,
    permanent_impairment: bool,
    intervention_required: bool,
    communicable_disease_suspected: bool,
    zone: str,
) -> AdverseReaction:
    """R-ADV-1, R-ADV-2, R-ADV-4: the batch's clinic (or QA) reports a reaction on an administered batch."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.REPORT_REACTION, batch.clinic_id, what="batch")
    if batch.status != Status.ADMINISTERED:
        raise NotAdministered(f"The batch is {batch.status}: a reaction is reported on an administered batch only.")
    description = description.strip()
    if not description:
        raise ValidationFailed({"description": ["is required"]})
    criteria = Criteria(
        Category(category),
        fatal,
        life_threatening,
        permanent_impairment,
        intervention_required,
        communicable_disease_suspected,
    )
    now = utcnow()
    administered_at = _administered_at(session, batch)
    check_report(criteria, ReactionOutcome(outcome), onset_at, administered_at=administered_at, now=now)
    assessment = assess(criteria, today_in(zone, now))
    facts: dict[str, Any] = {
        "onset_at": onset_at,
        "category": category,
        "description": description,
        "outcome": outcome,
        "fatal": fatal,
        "life_threatening": life_threatening,
        "permanent_impairment": permanent_impairment,
        "intervention_required": intervention_required,
        "communicable_disease_suspected": communicable_disease_suspected,
    }
    judged = {
        "serious": assessment.serious,
        "reportable": assessment.reportable,
        "report_due_on": assessment.report_due_on,
        "received_on": today_in(zone, now),
    }
    event = append_batch_event(session, batch, actor, "adverse_reaction_reported", facts | judged, recorded_at=now)
    reaction = AdverseReaction(
        batch=batch,
        reported_seq=event.seq,
        reported_hash=event.hash,
        reported_by_id=actor.id,
        reported_at=now,
        status=ReactionStatus.OPEN.value,
        **facts,
        **judged,
    )
    session.add(reaction)
    session.flush()
    _tell_and_look_back(session, actor, batch, reaction, assessment)
    session.flush()
    session.refresh(reaction, ["reported_by"])
    return reaction


def _visible(session: Session, actor: Actor, reaction_id: int) -> AdverseReaction:
    reaction = session.get(AdverseReaction, reaction_id)
    if reaction is None or not sees_clinic(actor, reaction.batch.clinic_id):
        raise NotFound("No such adverse reaction.")
    return reaction


def get(session: Session, actor: Actor, reaction_id: int) -> AdverseReaction:
    """One reaction (QA: any; a clinic: its own batches', else 404)."""
    require(actor, Action.READ_INVESTIGATIONS)
    return _visible(session, actor, reaction_id)


def search(
    session: Session, actor: Actor, *, status: str | None = None, din: str | None = None
) -> list[AdverseReaction]:
    """Reactions, newest first, by status and batch (a clinic: its own)."""
    query = filtered(session, actor, status=status, din=din).order_by(AdverseReaction.id.desc())
    return list(session.execute(query).unique().scalars())


def filtered(session: Session, actor: Actor, *, status: str | None = None, din: str | None = None) -> Select:
    """The reactions the actor may see that match, unordered (the list and its CSV export page it)."""
    require(actor, Action.READ_INVESTIGATIONS)
    on = Batch.id == AdverseReaction.batch_id
    query = scope.visible(select(AdverseReaction), actor, Batch.clinic_id, join=Batch, on=on)
    if status:
        query = query.where(AdverseReaction.status == status)
    if din:
        query = query.where(AdverseReaction.batch_id == batches.get(session, actor, din).id)
    return query


def for_batch(session: Session, batch: Batch) -> list[AdverseReaction]:
    """A batch's reactions, oldest first (for the card and the record)."""
    query = select(AdverseReaction).where(AdverseReaction.batch_id == batch.id).order_by(AdverseReaction.id)
    return list(session.execute(query).unique().scalars())


def close(
    session: Session,
    actor: Actor,
    reaction_id: int,
    *,
    conclusion: str,
    related_to_product: str,
    signature: dict[str, Any],
    zone: str,
    reported_to_authority_on: date | None = None,
) -> AdverseReaction:
    """R-ADV-3: QA closes a reaction with a signed conclusion (meaning ``reviewed``)."""
    require(actor, Action.INVESTIGATE)
    found = _visible(session, actor, reaction_id)
    batch = batches.get(session, actor, found.batch.din, for_update=True)
    reaction = session.get(AdverseReaction, reaction_id, populate_existing=True)
    assert reaction is not None
    if reaction.status != ReactionStatus.OPEN:
        raise Conflict(f"Adverse reaction {reaction_id} is already closed.")
    conclusion = conclusion.strip()
    if not conclusion:
        raise ValidationFailed({"conclusion": ["is required"]})
    related = Relatedness(related_to_product)
    check_closing(
        reportable=reaction.reportable, reported_to_authority_on=reported_to_authority_on, today=today_in(zone)
    )
    signed = signatures.sign(session, actor, signature, Meaning.REVIEWED, reaction.reported_hash, batch)
    event = append_batch_event(
        session,
        batch,
        actor,
        "adverse_reaction_closed",
        {
            "reported_seq": reaction.reported_seq,
            "conclusion": conclusion,
            "related_to_product": related.value,
            "reported_to_authority_on": reported_to_authority_on,
            "signature": signed,
        },
    )
    reaction.status = ReactionStatus.CLOSED.value
    reaction.conclusion = conclusion
    reaction.related_to_product = related.value
    reaction.reported_to_authority_on = reported_to_authority_on
    reaction.closed_by_id = actor.id
    reaction.closed_at = event.recorded_at
    reaction.closed_seq = event.seq
    reaction.signature = signed
    session.flush()
    session.refresh(reaction, ["closed_by"])
    return reaction


def _day(day: date | None) -> str:
    return day.isoformat() if day else "—"


def _yes(flag: bool) -> str:
    return "YES" if flag else "no"


def worksheet(session: Session, actor: Actor, reaction_id: int, *, zone: str) -> WorksheetView:
    """R-ADV-3: the facts a MedWatch 3500A report needs, from the reaction, its batch and the batch's record."""
    reaction = get(session, actor, reaction_id)
    batch = reaction.batch
    patient = batch.patient
    harvest = batches.step_values(session, batch, "harvest") or {}
    administered = _administered_at(session, batch)
    lots = session.execute(
        select(ReagentLot.kind, ReagentLot.lot_number, ReagentLot.status)
        .join(BatchUse, BatchUse.reagent_lot_id == ReagentLot.id)
        .where(BatchUse.batch_id == batch.id)
        .distinct()
    ).all()
    equipment = session.execute(
        select(BatchUse.equipment_code).where(BatchUse.batch_id == batch.id, BatchUse.equipment_code.is_not(None))
    ).scalars()
    local = documents_local(zone)
    sections = [
        (
            "A. Patient",
            [
                ("Identifier", f"{patient.given_name[:1]}{patient.family_name[:1]} (clinic MRN {patient.mrn})"),
                ("Date of birth", patient.birth_date.isoformat()),
                ("Weight at harvest", f"{harvest['weight_kg']} kg" if "weight_kg" in harvest else "—"),
            ],
        ),
        (
            "B. Adverse event",
            [
                ("Outcomes attributed (serious criteria)", ""),
                ("  Death", _yes(reaction.fatal)),
                ("  Life-threatening", _yes(reaction.life_threatening)),
                ("  Disability or permanent damage", _yes(reaction.permanent_impairment)),
                ("  Required intervention", _yes(reaction.intervention_required)),
                ("Communicable disease suspected", _yes(reaction.communicable_disease_suspected)),
                ("Category", reaction.category.replace("_", " ")),
                ("Date of event (onset)", local(reaction.onset_at)),
                ("Description", reaction.description),
                ("Outcome", reaction.outcome.replace("_", " ")),
            ],
        ),
        (
            "D. Suspect product",
            [
                ("Product", f"{batch.product}, autologous, from {batch.tissue_source.replace('_', ' ')}"),
                ("Distinct identification (ISBT 128 DIN)", Din(batch.din).display),
                ("Date of use (administration)", local(administered)),
                ("Expiry", local(batch.expires_at)),
                ("Used by", f"{batch.clinic.code} {batch.clinic.name}"),
                ("Reagent lots", "; ".join(f"{k} {n} ({s})" for k, n, s in lots) or "—"),
                ("Equipment", ", ".join(sorted(set(equipment))) or "—"),
            ],
        ),
        (
            "G. Report",
            [
                ("Serious", _yes(reaction.serious)),
                ("Reportable under 21 CFR 1271.350(a)", _yes(reaction.reportable)),
                ("Information received", reaction.received_on.isoformat()),
                ("Report due (15 calendar days)", _day(reaction.report_due_on)),
                ("Reported by", f"{reaction.reported_by.full_name} ({reaction.reported_by.username})"),
                ("Lookback", str(reaction.lookback_id) if reaction.lookback_id else "—"),
                ("Status", reaction.status),
                ("Conclusion", reaction.conclusion or "—"),
                ("Related to the product", reaction.related_to_product or "—"),
                ("Reported to the FDA on", _day(reaction.reported_to_authority_on)),
                ("Closing signature", manifestation_text(reaction.signature) if reaction.signature else "—"),
            ],
        ),
    ]
    return WorksheetView(
        reaction_id=reaction.id,
        din_display=Din(batch.din).display,
        sections=sections,
        generated=f"{iso_utc(utcnow())} by {actor.full_name} ({actor.username})",
    )


def documents_local(zone: str):
    """Times in the lab's zone, as the printed documents give them."""
    return lambda moment: moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"
