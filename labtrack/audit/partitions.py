"""``batch_events`` partitions made ahead (R-SCL-1, PostgreSQL).

``batch_events`` is range-partitioned by ``batch_id`` (migration 0011). Batch ids grow
with registrations, so a partition holds the events of the batches registered in about
one month: each new partition spans as many batch ids as were registered in the last 30
days (at least ``MIN_WIDTH``). The beat task keeps partitions for the next two such
months ahead of the newest batch, so an insert never finds no partition. The partitions
are made by the owner's ``labtrack_extend_batch_events`` (SECURITY DEFINER): the
application role creates no table itself, and the new partition inherits the parent's
append-only trigger and gets its own TRUNCATE trigger.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.models import Batch

MIN_WIDTH = 1000
MONTH = timedelta(days=30)
MONTHS_AHEAD = 2


def month_width(session: Session, now: datetime) -> int:
    """Batch ids registered in the last 30 days (by index: the first batch registered since then)."""
    newest = session.execute(select(func.max(Batch.id))).scalar_one_or_none() or 0
    first = session.execute(
        select(Batch.id).where(Batch.registered_at >= now - MONTH).order_by(Batch.registered_at).limit(1)
    ).scalar_one_or_none()
    return max(MIN_WIDTH, newest - first + 1 if first is not None else 0)


def extend(session: Session, now: datetime | None = None) -> int:
    """Make the partitions missing for the next ``MONTHS_AHEAD`` months of registrations; how many were made."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    width = month_width(session, now or utcnow())
    newest = session.execute(select(func.max(Batch.id))).scalar_one_or_none() or 0
    return int(
        session.execute(
            text("SELECT labtrack_extend_batch_events(:upper, :width)"),
            {"upper": newest + 1 + MONTHS_AHEAD * width, "width": width},
        ).scalar_one()
    )


def bounds(session: Session) -> list[tuple[str, str]]:
    """Each partition's name and bounds, in order (for the CLI and tests)."""
    rows = session.execute(
        text(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'batch_events'::regclass ORDER BY c.oid"
        )
    )
    return [(row[0], row[1]) for row in rows]
