"""The facts the one policy (``labtrack.domain.decisions``) decides on, read for one batch."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor
from labtrack.domain.decisions import BatchFacts, Decision, ResultFacts, decide
from labtrack.domain.deviations import DeviationStatus
from labtrack.domain.lifecycle import state_of
from labtrack.domain.process import ALL_STEP_NAMES
from labtrack.domain.qc import required_tests
from labtrack.models import Batch, BatchEvent, Deviation, QcResult
from labtrack.services import qc

# Events whose actor "performed or verified a step or result" (segregation of duties, R-REL-1).
PARTICIPATION = (*ALL_STEP_NAMES, "qc_recorded", "qc_verified", "correction")


def qc_facts(session: Session, batch: Batch) -> tuple[ResultFacts, ...]:
    """The batch's QC results as the decisions read them, each marked when an accepted deviation covers it
    (one query)."""
    covered = qc.covered_by_accepted_deviation()
    rows = session.execute(
        select(
            QcResult.id,
            QcResult.test,
            QcResult.value,
            QcResult.within_spec,
            QcResult.entered_by_id,
            QcResult.verified_by_id,
            QcResult.record_hash,
            covered,
            QcResult.unit,
            QcResult.limit,
        )
        .where(QcResult.batch_id == batch.id)
        .order_by(QcResult.id)
    )
    return tuple(
        ResultFacts(id_, test, value["v"], within, entered, verified, record_hash, bool(is_covered), unit, limit)
        for id_, test, value, within, entered, verified, record_hash, is_covered, unit, limit in rows
    )


def participation(session: Session, batch: Batch) -> dict[int, frozenset[str]]:
    """Who performed or verified a step or result on the batch, and how (user id -> event types)."""
    rows = session.execute(
        select(BatchEvent.actor_id, BatchEvent.type)
        .where(BatchEvent.batch_id == batch.id, BatchEvent.type.in_(PARTICIPATION))
        .distinct()
    )
    found: dict[int, set[str]] = {}
    for actor_id, type_ in rows:
        found.setdefault(actor_id, set()).add(type_)
    return {actor_id: frozenset(types) for actor_id, types in found.items()}


def facts(session: Session, batch: Batch) -> BatchFacts:
    """Everything the decisions about ``batch`` read, now."""
    open_ids = session.execute(
        select(Deviation.id)
        .where(Deviation.batch_id == batch.id, Deviation.status == DeviationStatus.OPEN.value)
        .order_by(Deviation.id)
    ).scalars()
    return BatchFacts(
        state=state_of(batch),
        now=utcnow(),
        required=tuple(required_tests(batch.specification.body)),
        results=qc_facts(session, batch),
        open_deviation_ids=tuple(open_ids),
        participation=participation(session, batch),
        custodian_name=_name(batch.custodian),
        recipient_name=_name(batch.transfer_to),
    )


def _name(user) -> str | None:
    return f"{user.full_name} ({user.username})" if user is not None else None


def for_actor(session: Session, actor: Actor, batch: Batch) -> list[Decision]:
    """Every action ``batch`` has now, allowed or refused for ``actor``, with the reasons in words."""
    return decide(actor, facts(session, batch))


def took_part_in(session: Session, actor: Actor, batch_ids: list[int]) -> set[int]:
    """Of ``batch_ids``, the batches on which ``actor`` performed or verified a step or result (one query)."""
    if not batch_ids:
        return set()
    rows = session.execute(
        select(BatchEvent.batch_id)
        .where(
            BatchEvent.batch_id.in_(batch_ids),
            BatchEvent.actor_id == actor.id,
            BatchEvent.type.in_(PARTICIPATION),
        )
        .distinct()
    ).scalars()
    return set(rows)
