"""Follow-up plans and visits (R-OUT-1, R-OUT-2): versioned plans, visits scheduled at administration,
measurements recorded by the batch's clinic as ``follow_up_recorded`` events in the batch's chain.

Plans change like specifications under change control: an admin proposes a new version,
and it comes into force only when a QA user other than the proposer approves it with an
electronic signature (meaning ``approved``) over the hash of its body. Both are recorded
on the reference-data chain. Version 1 of each tissue source is the default of R-OUT-1,
made (audited) on first need.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import rfc8785
from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import followup
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import Conflict, NotFound, ValidationFailed
from labtrack.domain.followup import BASELINE, Measurement, PlanStatus, ScheduledVisit, VisitStatus
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import TissueSource
from labtrack.domain.specifications import FOLLOW_UP_PLAN, ProposalFacts, check_proposal
from labtrack.models import Attachment, Batch, FollowUpPlan, FollowUpVisit, User
from labtrack.services import batches, scope, specifications
from labtrack.services.streams import append_admin_event, append_batch_event

SYSTEM = "system"


# --- plans (R-OUT-1) ----------------------------------------------------------------------------


def plan_hash(tissue_source: str, version: int, body: dict[str, Any]) -> str:
    """What an approval signs: the SHA-256 of the plan's RFC 8785 form."""
    text = rfc8785.dumps({"tissue_source": tissue_source, "version": version, "body": body})
    return hashlib.sha256(text).hexdigest()


def source_of(text: str) -> str:
    """A tissue source named in a path; an unknown one is 404."""
    try:
        return TissueSource(text).value
    except ValueError:
        raise NotFound("No such tissue source.") from None


def _in_force(session: Session, source: str) -> FollowUpPlan | None:
    return session.execute(
        select(FollowUpPlan)
        .where(FollowUpPlan.tissue_source == source, FollowUpPlan.status == PlanStatus.APPROVED.value)
        .order_by(FollowUpPlan.version.desc())
        .limit(1)
    ).scalar_one_or_none()


def _default(source: str) -> FollowUpPlan:
    return FollowUpPlan(
        tissue_source=source,
        version=1,
        body=followup.default_plan(),
        status=PlanStatus.APPROVED.value,
        proposed_by=SYSTEM,
        proposed_at=utcnow(),
        approved_by=None,
        approved_at=None,
    )


def current_plan(session: Session, tissue_source: TissueSource | str) -> FollowUpPlan:
    """The approved version in force: the highest; version 1 (the default) is stored (audited) on first need."""
    source = TissueSource(tissue_source).value
    plan = _in_force(session, source)
    if plan is not None:
        return plan
    plan = _default(source)
    session.add(plan)
    session.flush()  # two first uses collide on (tissue_source, version): the unit of work re-runs
    append_admin_event(
        session,
        SYSTEM,
        "follow_up_plan_approved",
        {"key": source, "old": None, "new": {"version": 1, "body": plan.body}},
    )
    return plan


def list_plans(session: Session) -> list[FollowUpPlan]:
    """Every version of every tissue source's plan, newest first; the default stands as version 1 until stored."""
    stored = list(
        session.execute(
            select(FollowUpPlan).order_by(FollowUpPlan.tissue_source, FollowUpPlan.version.desc())
        ).scalars()
    )
    present = {plan.tissue_source for plan in stored}
    return stored + [_default(source.value) for source in TissueSource if source.value not in present]


def _latest(session: Session, source: str) -> FollowUpPlan:
    query = select(FollowUpPlan).where(FollowUpPlan.tissue_source == source).order_by(FollowUpPlan.version.desc())
    return session.execute(query.limit(1)).scalar_one()


def _facts(session: Session, plan: FollowUpPlan) -> ProposalFacts:
    """A plan version as R-QC-6's rules read a proposal: proposed on the version before it."""
    proposer = session.execute(select(User.id).where(User.username == plan.proposed_by)).scalar_one_or_none()
    in_force = current_plan(session, plan.tissue_source).version
    # the default version 1 was "proposed" by the system, no user: nobody is its proposer
    return ProposalFacts(plan.id, plan.status, proposer or 0, plan.version - 1, in_force)


def propose_plan(
    session: Session, actor: Actor, tissue_source: str, body: dict[str, Any], *, reason: str
) -> FollowUpPlan:
    """An admin proposes the next version with a reason, under specifications' change control (R-QC-6): one
    open proposal per tissue source, not in force until QA approves it."""
    require(actor, FOLLOW_UP_PLAN.propose)
    source = source_of(tissue_source)
    clean = followup.validate_plan(body)
    current_plan(session, source)
    latest = _latest(session, source)
    check_proposal(actor, reason, latest.id if latest.status == PlanStatus.PROPOSED.value else None, FOLLOW_UP_PLAN)
    plan = FollowUpPlan(
        tissue_source=source,
        version=latest.version + 1,
        body=clean,
        status=PlanStatus.PROPOSED.value,
        proposed_by=actor.username,
        reason=reason.strip(),
    )
    session.add(plan)
    session.flush()
    append_admin_event(
        session,
        actor.username,
        "follow_up_plan_proposed",
        {
            "key": source,
            "old": {"version": latest.version},
            "new": {"version": plan.version, "body": clean, "reason": plan.reason},
        },
    )
    return plan


def approve_plan(
    session: Session, actor: Actor, tissue_source: str, version: int, *, signature: dict[str, Any]
) -> FollowUpPlan:
    """QA, not the proposer, approves a proposed version with a signature (R-QC-6's rules and signing); it is
    then in force."""
    require(actor, FOLLOW_UP_PLAN.approve)
    source = source_of(tissue_source)
    plan = session.execute(
        select(FollowUpPlan).where(FollowUpPlan.tissue_source == source, FollowUpPlan.version == version)
    ).scalar_one_or_none()
    if plan is None:
        raise NotFound("No such follow-up plan version.")
    manifestation = specifications.sign_approval(
        session, actor, _facts(session, plan), signature, plan_hash(source, version, plan.body), FOLLOW_UP_PLAN
    )
    plan.status = PlanStatus.APPROVED.value
    plan.approved_by = actor.username
    plan.approved_at = utcnow()
    plan.signature = manifestation
    append_admin_event(
        session,
        actor.username,
        "follow_up_plan_approved",
        {"key": source, "old": None, "new": {"version": version, "body": plan.body, "signature": manifestation}},
    )
    return plan


# --- visits (R-OUT-2) ---------------------------------------------------------------------------


def schedule(session: Session, batch: Batch, actor: Actor, administered_at: datetime) -> list[FollowUpVisit]:
    """Administration schedules the plan's visits; the schedule is an event of its own in the chain."""
    plan = current_plan(session, batch.tissue_source)
    harvest = batches.step_values(session, batch, "harvest") or {}
    harvested_on = _date_of(harvest.get("ended_at")) or administered_at.date()
    planned = followup.schedule(plan.body, harvested_on=harvested_on, administered_on=administered_at.date())
    rows = [
        FollowUpVisit(
            batch_id=batch.id,
            plan_id=plan.id,
            visit=v.visit,
            due_on=v.due_on,
            window_from=v.window_from,
            window_to=v.window_to,
            closes_on=v.closes_on,
            status=VisitStatus.DUE.value,
            late=False,
        )
        for v in planned
    ]
    session.add_all(rows)
    append_batch_event(
        session,
        batch,
        actor,
        "follow_ups_scheduled",
        {
            "plan_version": plan.version,
            "visits": [
                {"visit": v.visit, "due_on": v.due_on, "window_from": v.window_from, "window_to": v.window_to}
                for v in planned
            ],
        },
        occurred_at=administered_at,
    )
    return rows


def _date_of(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date()
        except ValueError:
            return None
    return None


def visits_of(session: Session, batch: Batch) -> list[FollowUpVisit]:
    """The batch's follow-up visits: the baseline first, then by due date."""
    rows = session.execute(select(FollowUpVisit).where(FollowUpVisit.batch_id == batch.id)).scalars()
    return sorted(rows, key=lambda v: (v.due_on if v.visit != BASELINE else date.min, v.visit))


def follow_ups(session: Session, actor: Actor, din: str) -> list[FollowUpVisit]:
    """The batch's visits (R-OUT-2): empty until it is administered."""
    return visits_of(session, batches.get(session, actor, din))


def scheduled(visit: FollowUpVisit) -> ScheduledVisit:
    """A stored visit as the domain's schedule reads it (due date, window, closing date)."""
    return ScheduledVisit(visit.visit, visit.due_on, visit.window_from, visit.window_to, visit.closes_on)


def administered_on(batch: Batch) -> date:
    """Administration is the last physical step: its time is the projection's ``last_physical_at``."""
    return (batch.last_physical_at or batch.registered_at).date()


def record(
    session: Session,
    actor: Actor,
    din: str,
    visit: str,
    *,
    measured_on: date,
    hair_density_per_cm2: float,
    patient_global_assessment: int,
    investigator_global_assessment: int,
    adverse_reaction: bool,
    hair_shaft_diameter_um: float | None = None,
    note: str | None = None,
    photo_ids: list[int] | None = None,
    late_reason: str | None = None,
) -> FollowUpVisit:
    """A clinic user of the batch's clinic records a visit (R-OUT-2): one ``follow_up_recorded`` event.

    Outside the visit's window the entry needs ``late_reason``; a visit recorded already is 409.
    Photos are cited with their SHA-256, so the event's hash covers the pictures' content.
    """
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.RECORD_FOLLOW_UP, batch.clinic_id, what="batch")
    row = session.execute(
        select(FollowUpVisit).where(FollowUpVisit.batch_id == batch.id, FollowUpVisit.visit == visit)
    ).scalar_one_or_none()
    if row is None:
        if batch.status != Status.ADMINISTERED.value:
            raise Conflict("Follow-up visits are scheduled when the product is administered; this one is not yet.")
        raise NotFound(f"No visit {visit!r} is scheduled for this batch.")
    if row.status == VisitStatus.DONE.value:
        raise Conflict(f"Visit {visit} was recorded already (event {row.recorded_seq}); correct it instead.")
    measurement = Measurement(
        measured_on=measured_on,
        hair_density_per_cm2=hair_density_per_cm2,
        patient_global_assessment=patient_global_assessment,
        investigator_global_assessment=investigator_global_assessment,
        adverse_reaction=adverse_reaction,
        hair_shaft_diameter_um=hair_shaft_diameter_um,
        note=(note or "").strip() or None,
    )
    followup.check_measurement(measurement)
    late = followup.check_timing(
        scheduled(row),
        measured_on,
        today=utcnow().date(),
        administered_on=administered_on(batch),
        late_reason=late_reason,
    )
    photos = _photos(session, batch, list(dict.fromkeys(photo_ids or [])))
    data: dict[str, Any] = {"visit": visit, **measurement.as_data()}
    data["photos"] = [{"id": p.id, "sha256": p.sha256, "content_type": p.content_type} for p in photos]
    data["status_before"] = row.status
    if late:
        data["late_reason"] = late_reason.strip() if late_reason else None
    event = append_batch_event(session, batch, actor, "follow_up_recorded", data)
    row.status = VisitStatus.DONE.value
    row.measured_on = measured_on
    row.measurement = measurement.as_data() | {"photos": data["photos"]}
    row.late = late
    row.recorded_seq = event.seq
    row.recorded_by_id = actor.id
    session.flush()
    return row


def _photos(session: Session, batch: Batch, ids: list[int]) -> list[Attachment]:
    if len(ids) > followup.MAX_PHOTOS:
        raise ValidationFailed({"photo_ids": [f"at most {followup.MAX_PHOTOS} photos per visit"]})
    if not ids:
        return []
    found = {
        a.id: a
        for a in session.execute(
            select(Attachment).where(Attachment.id.in_(ids), Attachment.batch_id == batch.id)
        ).scalars()
    }
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationFailed({"photo_ids": [f"no photo {', '.join(map(str, missing))} on this batch"]})
    return [found[i] for i in ids]


@dataclass(frozen=True)
class ClinicRow:
    din: str
    patient: str
    mrn: str
    visit: FollowUpVisit


def clinic_list(session: Session, actor: Actor, today: date) -> dict[str, list[ClinicRow]]:
    """The clinic's visits grouped as its page shows them: overdue, due soon (30 days), later, done."""
    require(actor, Action.RECORD_FOLLOW_UP)
    query = select(FollowUpVisit, Batch).join(Batch, Batch.id == FollowUpVisit.batch_id)
    query = scope.visible(query, actor, Batch.clinic_id)
    groups: dict[str, list[ClinicRow]] = {"overdue": [], "due_soon": [], "later": [], "done": []}
    for visit, batch in session.execute(query.order_by(FollowUpVisit.due_on)).unique():
        entry = ClinicRow(
            batch.din, f"{batch.patient.family_name}, {batch.patient.given_name}", batch.patient.mrn, visit
        )
        if visit.status == VisitStatus.DONE.value:
            groups["done"].append(entry)
        elif visit.status == VisitStatus.MISSED.value or today > visit.window_to:
            groups["overdue"].append(entry)
        elif (visit.due_on - today).days <= 30:
            groups["due_soon"].append(entry)
        else:
            groups["later"].append(entry)
    groups["done"].sort(key=lambda e: e.visit.measured_on or date.min, reverse=True)
    return groups
