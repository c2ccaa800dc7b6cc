"""Nightly housekeeping (R-OPS-6): what is only operational goes, in small batches; history never.

Deleted, each in batches of ``BATCH`` rows, one short transaction per batch:

- ``Idempotency-Key`` records past their replay window;
- bearer tokens (and web sessions) past their expiry: they answer 401 already;
- delivered outbox rows 30 days after delivery, with their delivery log, unless an
  in-app notification still points at one (it goes once that notification has);
- notifications read more than 90 days ago.

The event chains, the checkpoints and the authentication record are never named
here; on PostgreSQL the application role could not delete from them anyway
(``labtrack.privileges``), and their triggers refuse it to anyone. Each batch is
chosen afresh (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so two workers running the
task at once share the work, and a run after a finished one finds nothing: the task
is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.models import ApiToken, IdempotencyRecord, Notification, OutboxDelivery, OutboxMessage

# How long an Idempotency-Key replays its first answer (requirements §3): the API honours it, housekeeping
# deletes the records after it.
IDEMPOTENCY_WINDOW = timedelta(hours=24)

BATCH = 500
DELIVERED_OUTBOX_KEPT = timedelta(days=30)
READ_NOTIFICATIONS_KEPT = timedelta(days=90)


@dataclass(frozen=True)
class Retention:
    idempotency: timedelta
    outbox: timedelta = DELIVERED_OUTBOX_KEPT
    notifications: timedelta = READ_NOTIFICATIONS_KEPT


@dataclass
class Purged:
    """How many rows each nightly purge deleted, by table."""

    deleted: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


def _purge(database: Database, model, due: ColumnElement[bool], before: Callable[[Session, list[int]], None] | None):
    """Delete ``model`` rows matching ``due``, ``BATCH`` at a time; how many went."""
    deleted = 0

    def one_batch(session: Session) -> int:
        ids = list(
            session.execute(
                select(model.id).where(due).order_by(model.id).limit(BATCH).with_for_update(skip_locked=True)
            ).scalars()
        )
        if ids:
            if before is not None:
                before(session, ids)
            session.execute(delete(model).where(model.id.in_(ids)))
        return len(ids)

    while True:
        count = database.write(one_batch)
        deleted += count
        if count < BATCH:
            return deleted


def _delivery_log(session: Session, outbox_ids: list[int]) -> None:
    session.execute(delete(OutboxDelivery).where(OutboxDelivery.outbox_id.in_(outbox_ids)))


def run(database: Database, retention: Retention, now: datetime | None = None) -> Purged:
    """Delete what has outlived its use (see the module's docstring); safe to run at any time, twice at once too."""
    now = now or utcnow()
    outcome = Purged()
    outcome.deleted["idempotency_keys"] = _purge(
        database, IdempotencyRecord, IdempotencyRecord.created_at < now - retention.idempotency, None
    )
    outcome.deleted["api_tokens"] = _purge(database, ApiToken, ApiToken.expires_at < now, None)
    outcome.deleted["notifications"] = _purge(
        database, Notification, Notification.read_at < now - retention.notifications, None
    )
    old_delivered = (
        (OutboxMessage.status == "delivered")
        & (OutboxMessage.delivered_at < now - retention.outbox)
        & ~exists().where(Notification.outbox_id == OutboxMessage.id)
    )
    outcome.deleted["outbox"] = _purge(database, OutboxMessage, old_delivered, _delivery_log)
    return outcome
