"""Appending to the hash-chained streams (R-AUD-1) and keeping projections current."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor
from labtrack.domain.hashing import GENESIS_HASH, canonical_body, chain, jsonable
from labtrack.models import AdminEvent, Batch, BatchEvent, User

ADMIN_STREAM = "admin"
_ADMIN_CHAIN_LOCK = 0x4C54_4144  # "LTAD"; the checkpoint lock is "LTCK"


def append_batch_event(
    session: Session,
    batch: Batch,
    actor: Actor,
    type: str,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    recorded_at: datetime | None = None,
    flush: bool = True,
) -> BatchEvent:
    """Append one event to the batch's own chain and advance the projection's head.

    Two writers racing on one batch compute the same ``seq``; the unique
    ``(batch_id, seq)`` constraint refuses the second, whose unit of work re-runs.
    With ``flush=False``, events added to many batches (each locked by the caller) before
    one flush go out as one multi-row INSERT, and their heads as one executemany UPDATE.
    """
    recorded_at = recorded_at or utcnow()
    occurred_at = occurred_at or recorded_at
    seq = (batch.seq or 0) + 1
    prev_hash = batch.head_hash or GENESIS_HASH
    canonical = canonical_body(
        stream_key=batch.din,
        seq=seq,
        type=type,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor=actor.username,
        data=data,
    )
    link = chain(prev_hash, canonical)
    event = BatchEvent(
        batch_id=batch.id,
        seq=seq,
        type=type,
        occurred_at=occurred_at,
        recorded_at=recorded_at,
        actor_id=actor.id,
        data=jsonable(data),
        prev_hash=prev_hash,
        hash=link.hash,
        canonical=link.canonical,
    )
    # The actor's row is often in the session already (the custodian): link it, so that showing the
    # event does not read it again.
    user = session.identity_map.get(identity_key(User, actor.id))
    if user is not None:
        event.actor = user
    session.add(event)
    batch.seq = seq
    batch.head_hash = link.hash
    if flush:
        session.flush()
    return event


def append_admin_event(session: Session, actor_name: str, type: str, data: dict[str, Any]) -> AdminEvent:
    """Append to the reference-data chain: who changed what, with old and new values."""
    if session.get_bind().dialect.name == "postgresql":
        # One chain for all admin changes and no row to lock: concurrent admins queue here until the
        # holder commits, instead of colliding on seq until the unit of work runs out of retries.
        # (SQLite write transactions are serialised already.)
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADMIN_CHAIN_LOCK})
    head = session.execute(select(AdminEvent).order_by(AdminEvent.seq.desc()).limit(1)).scalar_one_or_none()
    now = utcnow()
    seq = head.seq + 1 if head else 1
    prev_hash = head.hash if head else GENESIS_HASH
    canonical = canonical_body(
        stream_key=ADMIN_STREAM,
        stream_field="stream",
        seq=seq,
        type=type,
        occurred_at=now,
        recorded_at=now,
        actor=actor_name,
        data=data,
    )
    link = chain(prev_hash, canonical)
    event = AdminEvent(
        seq=seq,
        type=type,
        occurred_at=now,
        recorded_at=now,
        actor=actor_name,
        data=jsonable(data),
        prev_hash=prev_hash,
        hash=link.hash,
        canonical=link.canonical,
    )
    session.add(event)
    session.flush()
    return event
