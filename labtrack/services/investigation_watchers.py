"""Investigation watchers run by Celery beat: reports due (R-ADV-2) and unanswered lookbacks (R-LBK-3).

Like ``labtrack.services.watchers``, each is a query of candidates (``due_reactions``,
``waiting_lookbacks``) and a function that handles one in the caller's transaction, locking
the row it changes (``FOR UPDATE`` on PostgreSQL; SQLite writers are serial) and deciding
again under the lock; this module never commits. The job (``labtrack/jobs.py``) reads the
candidates with a plain indexed read and gives each a unit of work of its own. The notice
sent and the column saying so are written in the same transaction, so two workers running
the same watcher at once send each notice once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session, lazyload

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


@dataclass
class Told:
    due_soon: list[int] = field(default_factory=list)  # reaction ids
    overdue: list[int] = field(default_factory=list)
    reminded: list[tuple[int, str]] = field(default_factory=list)  # (lookback id, clinic code)
    escalated: list[tuple[int, str]] = field(default_factory=list)


# --- reports due (R-ADV-2) --------------------------------------------------------------------


def tell_due(session: Session, reaction_id: int, today: date, now: datetime) -> DueNotice | None:
    """Tell QA that the reaction's report is due soon, or overdue, if it is and QA has not been told yet."""
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


def due_reactions(today: date) -> Select[tuple[int]]:
    """The ids of open reactions whose report is due within the warning days or overdue, and not told yet."""
    return (
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


# --- unanswered lookbacks (R-LBK-3) -----------------------------------------------------------


def chase(session: Session, lookback_id: int, now: datetime) -> Told:
    """Remind each clinic of the lookback silent for 24 h, once; after 72 h tell QA which still are."""
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


def waiting_lookbacks(now: datetime) -> Select[tuple[int]]:
    """The ids of open lookbacks with a clinic due a reminder or an escalation."""
    return (
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
