"""Background jobs: the transactions of the watchers and the outbox, for the worker tasks (``workers/``).

The services handle one thing in the caller's transaction and never commit; a job reads what is due with
a plain read, then gives each thing a unit of work of its own (``Database.write``), so one batch's failure
or lock never holds back the others and each commit is short. Work that leaves the process (webhooks and
e-mail) runs between two units of work, never inside one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.services import outbox, watchers


@dataclass
class WatchOutcome:
    expired: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


def each(database: Database, due: Select[Any], work: Callable[[Session, Any], bool]) -> list[Any]:
    """Run ``work(session, key)`` for every key ``due`` selects, one unit of work each; the keys it acted on."""
    return [key for key in database.scalars(due) if database.write(lambda s, key=key: work(s, key))]


def expiry_watch(database: Database, *, warning: timedelta, now: datetime | None = None) -> WatchOutcome:
    """R-SEQ-3: expire unadministered batches past ``expires_at``; warn each batch's clinic once, ``warning``
    before."""
    now = now or utcnow()
    return WatchOutcome(
        expired=each(database, watchers.due_to_expire(now), lambda s, din: watchers.expire(s, din, now)),
        warned=each(database, watchers.due_to_warn(now, warning), lambda s, din: watchers.warn(s, din, now, warning)),
    )


def custody_watch(database: Database, *, gap: timedelta, now: datetime | None = None) -> WatchOutcome:
    """R-CUS-5: one ``custody_overdue`` deviation per hand-off left unreceived longer than ``gap``."""
    now = now or utcnow()
    overdue = each(
        database, watchers.overdue_handoffs(now, gap), lambda s, din: watchers.open_overdue(s, din, now, gap)
    )
    return WatchOutcome(overdue=overdue)


def dispatch(
    database: Database, settings: outbox.Settings, ids: Sequence[int] | None = None, limit: int = outbox.CHUNK
) -> int:
    """Claim up to ``limit`` due outbox rows (of ``ids``, or any) and deliver them; return how many were claimed.

    Two short transactions: the claim (with the in-app notifications), then the record of the attempts; the
    webhooks and e-mail go out between them.
    """
    claimed, jobs = database.write(lambda s: outbox.claim(s, settings, ids, limit))
    if jobs:
        attempts = outbox.deliver(jobs, settings.smtp_url)
        database.write(lambda s: outbox.record(s, settings, jobs, attempts))
    return claimed


def sweep(database: Database, settings: outbox.Settings, budget_s: float = 25.0) -> int:
    """Deliver every due outbox row, chunk by chunk, for at most ``budget_s`` (the next sweep goes on)."""
    deadline = monotonic() + budget_s
    total = 0
    while monotonic() < deadline:
        claimed = dispatch(database, settings)
        total += claimed
        if claimed < outbox.CHUNK:
            break
    return total
