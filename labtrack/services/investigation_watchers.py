"""Investigation watchers run by Celery beat: reports due (R-ADV-2) and unanswered lookbacks (R-LBK-3).

Like ``labtrack.services.watchers``, each finds candidates with a plain indexed read, then
handles each in a unit of work of its own that locks the row it changes (``FOR UPDATE`` on
PostgreSQL; SQLite writers are serial) and decides again under the lock. The notice sent
and the column saying so are written in the same transaction, so two workers running the
same watcher at once send each notice once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, lazyload

from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.investigations import (
    ESCALATE_AFTER,
    REMIND_AFTER,
    WARN_DAYS_BEFORE_DUE,
    ClinicNotice,
    DueNotice,
    LookbackStatus,
    ReactionStatus,
    clinic_notices,
    due_notice,
)
from labtrack.models import AdverseReaction, Batch, Lookback, LookbackClinic
from labtrack.services import lookbacks, outbox
from labtrack.services.adverse_reactions import today_in


@dataclass
class Told:
    due_soon: list[int] = field(default_factory=list)  # reaction ids
    overdue: list[int] = field(default_factory=list)
    reminded: list[tuple[int, str]] = field(default_factory=list)  # (lookback id, clinic code)
    escalated: list[tuple[int, str]] = field(default_factory=list)


# --- reports due (R-ADV-2) --------------------------------------------------------------------


def _tell_due(session: Session, reaction_id: int, today: date, now: datetime) -> DueNotice | None:
    reaction = session.execute(
        select(AdverseReaction)
        .options(lazyload("*"))
        .where(AdverseReaction.id == reaction_id, AdverseReaction.status == ReactionStatus.OPEN.value)
        .with_for_update()
    ).scalar_one_or_none()
    if reaction is None or reaction.report_due_on is None:
        return None
    notice = due_notice(
        reaction.report_due_on,
        today,
        warned=reaction.due_warned_at is not None,
        overdue_told=reaction.overdue_told_at is not None,
    )
    if notice is None:
        return None
    batch = session.get(Batch, reaction.batch_id)
    payload = {"reaction_id": reaction.id, "report_due_on": reaction.report_due_on.isoformat()}
    outbox.enqueue(session, f"adverse_reaction.{notice.value}", batch, payload)
    reaction.due_warned_at = reaction.due_warned_at or now
    if notice == DueNotice.OVERDUE:
        reaction.overdue_told_at = now
    return notice


def reaction_due_watch(database: Database, *, zone: str, now: datetime | None = None) -> Told:
    """Tell QA of each reportable reaction 5 days before its report is due, and once it is overdue."""
    now = now or utcnow()
    today = today_in(zone, now)
    told = Told()
    due = (
        select(AdverseReaction.id)
        .where(
            AdverseReaction.status == ReactionStatus.OPEN.value,
            AdverseReaction.report_due_on <= today + timedelta(days=WARN_DAYS_BEFORE_DUE),
            or_(
                AdverseReaction.due_warned_at.is_(None),
                (AdverseReaction.report_due_on < today) & AdverseReaction.overdue_told_at.is_(None),
            ),
        )
        .order_by(AdverseReaction.report_due_on)
    )
    for reaction_id in database.scalars(due):
        notice = database.write(lambda s, reaction_id=reaction_id: _tell_due(s, reaction_id, today, now))
        if notice is not None:
            (told.overdue if notice == DueNotice.OVERDUE else told.due_soon).append(reaction_id)
    return told


# --- unanswered lookbacks (R-LBK-3) -----------------------------------------------------------


def _chase(session: Session, lookback_id: int, now: datetime) -> Told:
    told = Told()
    lookback = session.execute(
        select(Lookback).options(lazyload("*")).where(Lookback.id == lookback_id).with_for_update()
    ).scalar_one()
    if lookback.status != LookbackStatus.OPEN:
        return told
    answers = session.execute(
        select(LookbackClinic)
        .where(LookbackClinic.lookback_id == lookback_id, LookbackClinic.acknowledged_at.is_(None))
        .order_by(LookbackClinic.clinic_id)
    ).scalars()
    silent = []
    for answer in answers.unique():
        due = clinic_notices(
            answer.notified_at,
            now,
            acknowledged=False,
            reminded=answer.reminded_at is not None,
            escalated=answer.escalated_at is not None,
        )
        if ClinicNotice.REMINDER in due:
            own = lookbacks.clinic_batches(session, lookback_id, answer.clinic_id)
            payload = lookbacks.clinic_payload(lookback, own, lookback.seed_kind)
            outbox.enqueue(session, "lookback.reminder", None, payload, clinic_id=answer.clinic_id)
            answer.reminded_at = now
            told.reminded.append((lookback_id, answer.clinic.code))
        if ClinicNotice.ESCALATION in due:
            answer.escalated_at = now
            silent.append(answer.clinic.code)
    if silent:
        payload = {"lookback_id": lookback_id, "reason": lookback.reason, "clinics": silent}
        outbox.enqueue(session, "lookback.unanswered", None, payload)
        told.escalated += [(lookback_id, code) for code in silent]
    return told


def lookback_watch(database: Database, *, now: datetime | None = None) -> Told:
    """Remind each clinic that has not acknowledged after 24 h; after 72 h tell QA which have not."""
    now = now or utcnow()
    told = Told()
    waiting = (
        select(LookbackClinic.lookback_id)
        .join(Lookback, Lookback.id == LookbackClinic.lookback_id)
        .where(
            Lookback.status == LookbackStatus.OPEN.value,
            LookbackClinic.acknowledged_at.is_(None),
            LookbackClinic.notified_at <= now - REMIND_AFTER,
            or_(
                LookbackClinic.reminded_at.is_(None),
                (LookbackClinic.notified_at <= now - ESCALATE_AFTER) & LookbackClinic.escalated_at.is_(None),
            ),
        )
        .distinct()
        .order_by(LookbackClinic.lookback_id)
    )
    for lookback_id in database.scalars(waiting):
        attempt = database.write(lambda s, lookback_id=lookback_id: _chase(s, lookback_id, now))
        told.reminded += attempt.reminded
        told.escalated += attempt.escalated
    return told
