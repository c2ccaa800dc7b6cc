"""Nightly housekeeping (R-OPS-6): what is only operational goes, in small batches; history never.

Deleted, each in batches of ``BATCH`` rows, one short transaction per batch (the job,
``labtrack.jobs.housekeeping``, gives each batch a unit of work; this module never commits):

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
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, select
from sqlalchemy.orm import Session

from labtrack.domain.operations import OutboxStatus
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


@dataclass(frozen=True)
class Purge:
    """One nightly purge: the ``model`` rows matching ``due``, kept as ``table`` in the counts; ``before``
    deletes what points at a batch of them first."""

    table: str
    model: Any
    due: ColumnElement[bool]
    before: Callable[[Session, list[int]], None] | None = None


def purges(retention: Retention, now: datetime) -> list[Purge]:
    """What has outlived its use at ``now`` (see the module's docstring), purge by purge, in order."""
    old_delivered = (
        (OutboxMessage.status == OutboxStatus.DELIVERED)
        & (OutboxMessage.delivered_at < now - retention.outbox)
        & ~exists().where(Notification.outbox_id == OutboxMessage.id)
    )
    return [
        Purge("idempotency_keys", IdempotencyRecord, IdempotencyRecord.created_at < now - retention.idempotency),
        Purge("api_tokens", ApiToken, ApiToken.expires_at < now),
        Purge("notifications", Notification, Notification.read_at < now - retention.notifications),
        Purge("outbox", OutboxMessage, old_delivered, _delivery_log),
    ]


def purge_batch(session: Session, purge: Purge) -> int:
    """Delete up to ``BATCH`` rows of ``purge``, skipping those another worker holds; how many went."""
    model = purge.model
    ids = list(
        session.execute(
            select(model.id).where(purge.due).order_by(model.id).limit(BATCH).with_for_update(skip_locked=True)
        ).scalars()
    )
    if ids:
        if purge.before is not None:
            purge.before(session, ids)
        session.execute(delete(model).where(model.id.in_(ids)))
    return len(ids)


def _delivery_log(session: Session, outbox_ids: list[int]) -> None:
    session.execute(delete(OutboxDelivery).where(OutboxDelivery.outbox_id.in_(outbox_ids)))
