"""Periodic watchers run by Celery beat: expiry (R-SEQ-3) and custody gaps (R-CUS-5).

Each watcher is a query of candidates (``due_to_expire``, ``due_to_warn``,
``overdue_handoffs``) and a function that handles one batch in the caller's
transaction, locking the batch row (``FOR UPDATE`` on PostgreSQL; SQLite write
transactions are serial) and re-checking the condition under the lock. The job
that runs them (``labtrack/jobs.py``, called by the worker tasks) reads the
candidates and gives each batch a unit of work of its own; this module never
commits. Two runs at once (two beats by mistake, or a slow run overlapping the
next) therefore have the effect of one: the second finds the work done.

Their events are written by the ``system`` user: ``batch_events.actor_id`` must
name a user, so an inactive admin account with no usable password is created on
first need, through the audited admin chain like any other user.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session

from labtrack.domain.actors import Actor, Role
from labtrack.domain.hashing import iso_utc
from labtrack.domain.lifecycle import TERMINAL, Status
from labtrack.models import Batch, BatchEvent, Deviation, User
from labtrack.services import batches, deviations, outbox
from labtrack.services.auth import actor_of
from labtrack.services.streams import append_admin_event, append_batch_event

SYSTEM_USERNAME = "system"
UNUSABLE_PASSWORD = "!"  # not an Argon2 hash: no password ever matches it
TERMINAL_VALUES = tuple(status.value for status in TERMINAL)


def watcher_actor(session: Session) -> Actor:
    """The ``system`` user that signs the watchers' events; created (audited) on first need."""
    user = session.execute(select(User).where(User.username == SYSTEM_USERNAME)).unique().scalar_one_or_none()
    if user is None:
        user = User(
            username=SYSTEM_USERNAME,
            full_name="LabTrack automatic tasks",
            role=Role.ADMIN.value,
            clinic_id=None,
            password_hash=UNUSABLE_PASSWORD,
            active=False,
        )
        session.add(user)
        session.flush()
        new = {"username": SYSTEM_USERNAME, "full_name": user.full_name, "role": user.role, "active": False}
        append_admin_event(session, SYSTEM_USERNAME, "user_created", {"key": SYSTEM_USERNAME, "old": None, "new": new})
    elif user.active or user.role != Role.ADMIN.value:
        raise RuntimeError(f"the username {SYSTEM_USERNAME!r} is reserved for LabTrack's automatic tasks")
    return actor_of(user)


# --- expiry (R-SEQ-3) -----------------------------------------------------------------------


def due_to_expire(now: datetime) -> Select[tuple[str]]:
    """The DINs of unadministered batches past ``expires_at``, soonest first."""
    return _due(now, now).where(Batch.expires_at <= now).order_by(Batch.expires_at)


def due_to_warn(now: datetime, warning: timedelta) -> Select[tuple[str]]:
    """The DINs of batches expiring within ``warning`` whose clinic has not been warned yet."""
    return (
        _due(now, now + warning)
        .where(Batch.expires_at > now, Batch.expiry_warned_at.is_(None))
        .order_by(Batch.expires_at)
    )


def _due(now: datetime, until: datetime) -> Select[tuple[str]]:
    return select(Batch.din).where(
        Batch.expires_at.is_not(None), Batch.expires_at <= until, Batch.status.not_in(TERMINAL_VALUES)
    )


def expire(session: Session, din: str, now: datetime) -> bool:
    """Mark the batch expired if it still is due (under its row lock); False when there is nothing to do."""
    batch = batches.find(session, din, for_update=True)
    if batch is None or batch.status in TERMINAL_VALUES or batch.expires_at is None or batch.expires_at > now:
        return False
    data = {"expires_at": iso_utc(batch.expires_at), "status_before": batch.status}
    append_batch_event(session, batch, watcher_actor(session), "expired", data, occurred_at=batch.expires_at)
    batch.status = Status.EXPIRED.value
    outbox.enqueue(session, "batch.expired", batch, data)
    return True


def warn(session: Session, din: str, now: datetime, warning: timedelta) -> bool:
    """Tell the batch's clinic, once, that it expires within ``warning``; False when not due or already told."""
    batch = batches.find(session, din, for_update=True)
    if batch is None or batch.status in TERMINAL_VALUES or batch.expires_at is None:
        return False
    # The warning's state is on the batch (migration 0010), not in the outbox, whose rows housekeeping deletes.
    if not now < batch.expires_at <= now + warning or batch.expiry_warned_at is not None:
        return False
    minutes_left = int((batch.expires_at - now).total_seconds() // 60)
    payload = {"expires_at": iso_utc(batch.expires_at), "minutes_left": minutes_left, "status": batch.status}
    outbox.enqueue(session, "batch.expiring", batch, payload)
    batch.expiry_warned_at = now
    return True


# --- custody gaps (R-CUS-5) -----------------------------------------------------------------


def overdue_handoffs(now: datetime, gap: timedelta) -> Select[tuple[str]]:
    """The DINs of batches whose pending hand-off is older than ``gap``, oldest first."""
    return (
        select(Batch.din)
        .where(Batch.transfer_to_id.is_not(None), Batch.transfer_at <= now - gap)
        .order_by(Batch.transfer_at)
    )


def open_overdue(session: Session, din: str, now: datetime, gap: timedelta) -> bool:
    """Open one ``custody_overdue`` deviation for the batch's hand-off left unreceived longer than ``gap``."""
    batch = batches.find(session, din, for_update=True)
    if batch is None or batch.transfer_to_id is None or batch.transfer_at is None or batch.transfer_at > now - gap:
        return False
    handoff_seq = session.execute(
        select(func.max(BatchEvent.seq)).where(BatchEvent.batch_id == batch.id, BatchEvent.type == "handoff")
    ).scalar_one()
    already = session.execute(
        select(
            exists().where(
                Deviation.batch_id == batch.id,
                Deviation.kind == "custody_overdue",
                Deviation.opened_seq > (handoff_seq or 0),
            )
        )
    ).scalar()
    if already:
        return False
    waited = int((now - batch.transfer_at).total_seconds() // 60)
    sender = batch.transfer_from.username if batch.transfer_from else "?"
    recipient = batch.transfer_to.username if batch.transfer_to else "?"
    description = (
        f"Hand-off from {sender} to {recipient} (seal {batch.transfer_seal_id}) at {iso_utc(batch.transfer_at)} "
        f"not received after {waited} minutes (limit {int(gap.total_seconds() // 60)})."
    )
    deviations.open_on(session, batch, watcher_actor(session), "custody_overdue", description)
    return True
