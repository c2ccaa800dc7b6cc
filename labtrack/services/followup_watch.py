"""The follow-up watcher (R-OUT-4), run by Celery beat: reminders and missed visits.

It reminds the batch's clinic 7 days before a visit is due and marks a visit
``missed`` when its window closes unrecorded, telling the clinic and QA; the miss is
a ``follow_up_missed`` event in the batch's chain. Like the other watchers
(``labtrack.services.watchers``) it is queries of candidates (``due_to_miss``,
``due_to_remind``) and functions that handle one visit in the caller's transaction,
locking the batch row and re-checking under the lock; this module never commits. The
job (``labtrack/jobs.py``) reads the candidates with a plain read and gives each visit a
unit of work of its own, so two workers running it at once remind and mark each visit
once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import followup
from labtrack.domain.followup import BASELINE, VisitStatus
from labtrack.models import Batch, FollowUpVisit
from labtrack.services import outbox
from labtrack.services.followups import scheduled
from labtrack.services.streams import append_batch_event
from labtrack.services.watchers import watcher_actor

REMINDER_TOPIC = "follow_up.due"
MISSED_TOPIC = "follow_up.missed"


@dataclass
class WatchReport:
    """The DINs of the batches whose clinic was reminded of a visit, and of those whose visit was missed."""

    reminded: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)


def _locked(session: Session, batch_id: int, visit_id: int) -> tuple[Batch, FollowUpVisit] | None:
    batch = session.execute(select(Batch).where(Batch.id == batch_id).with_for_update(of=Batch)).unique().scalar_one()
    visit = session.get(FollowUpVisit, visit_id, populate_existing=True)
    return (batch, visit) if visit is not None and visit.status == VisitStatus.DUE.value else None


def _payload(visit: FollowUpVisit) -> dict[str, str]:
    return {
        "visit": visit.visit,
        "due_on": visit.due_on.isoformat(),
        "window_from": visit.window_from.isoformat(),
        "window_to": visit.window_to.isoformat(),
    }


def remind(session: Session, batch_id: int, visit_id: int, today: date) -> bool:
    """Remind the batch's clinic of the visit, once, 7 days before it is due; False when not due or told."""
    found = _locked(session, batch_id, visit_id)
    if found is None or found[1].reminded_at is not None or not followup.reminder_due(scheduled(found[1]), today):
        return False
    batch, visit = found
    visit.reminded_at = utcnow()
    outbox.enqueue(session, REMINDER_TOPIC, batch, _payload(visit))
    return True


def miss(session: Session, batch_id: int, visit_id: int, today: date) -> bool:
    """Mark the visit missed once its window has closed unrecorded, telling the clinic and QA; False if not."""
    found = _locked(session, batch_id, visit_id)
    if found is None or not followup.missed(scheduled(found[1]), today):
        return False
    batch, visit = found
    visit.status = VisitStatus.MISSED.value
    visit.missed_at = utcnow()
    data = _payload(visit) | {"closes_on": visit.closes_on.isoformat()}
    append_batch_event(session, batch, watcher_actor(session), "follow_up_missed", data)
    outbox.enqueue(session, MISSED_TOPIC, batch, data)
    return True


def _due() -> Select[tuple[int, int]]:
    return select(FollowUpVisit.batch_id, FollowUpVisit.id).where(FollowUpVisit.status == VisitStatus.DUE.value)


def due_to_miss(today: date) -> Select[tuple[int, int]]:
    """The (batch id, visit id) of due visits whose window closed before ``today``."""
    return _due().where(FollowUpVisit.closes_on < today)


def due_to_remind(today: date) -> Select[tuple[int, int]]:
    """The (batch id, visit id) of due visits, baselines aside, within the reminder days and not reminded yet."""
    return _due().where(
        FollowUpVisit.reminded_at.is_(None),
        FollowUpVisit.visit != BASELINE,
        FollowUpVisit.due_on <= today + timedelta(days=followup.REMINDER_DAYS),
        FollowUpVisit.window_to >= today,
    )
