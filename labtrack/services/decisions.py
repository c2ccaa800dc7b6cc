"""The facts the one policy (``labtrack.domain.decisions``) decides on, read for one batch."""

from __future__ import annotations

from sqlalchemy import CompoundSelect, literal, literal_column, null, select, union_all
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor
from labtrack.domain.decisions import BatchFacts, Decision, ResultFacts, decide
from labtrack.domain.lifecycle import state_of
from labtrack.domain.process import ALL_STEP_NAMES
from labtrack.domain.qc import required_tests
from labtrack.models import Batch, BatchEvent, Deviation, QcResult
from labtrack.services import deviations, qc

# Events whose actor "performed or verified a step or result" (segregation of duties, R-REL-1).
PARTICIPATION = (*ALL_STEP_NAMES, "qc_recorded", "qc_verified", "correction")


def facts(session: Session, batch: Batch) -> BatchFacts:
    """Everything the decisions about ``batch`` read, now (one query: ``_FACTS``)."""
    results, open_ids, found = [], [], {}
    for row in session.execute(_FACTS, {"batch_id": batch.id}):
        kind, id_, name, value, within, entered, verified, record_hash, covered, unit, limit = row
        if kind == _RESULT:
            results.append(
                ResultFacts(id_, name, value["v"], within, entered, verified, record_hash, bool(covered), unit, limit)
            )
        elif kind == _OPEN:
            open_ids.append(id_)
        else:
            found.setdefault(id_, set()).add(name)
    return BatchFacts(
        state=state_of(batch),
        now=utcnow(),
        required=tuple(required_tests(batch.specification.body)),
        results=tuple(results),
        open_deviation_ids=tuple(open_ids),
        participation={actor_id: frozenset(types) for actor_id, types in found.items()},
        custodian_name=_name(batch.custodian),
        recipient_name=_name(batch.transfer_to),
    )


_RESULT, _OPEN, _TOOK_PART = "result", "open deviation", "took part"


def _facts_query() -> CompoundSelect:
    """The batch's QC results (each marked when an accepted deviation covers it), its open deviations and who
    performed or verified a step or result on it, and how, as the rows of one statement, tagged by kind
    (``_RESULT``: the result's columns; ``_OPEN``: the deviation's id; ``_TOOK_PART``: the user id and the event
    type), in id order, for the batch id bound as ``deviations.BATCH_ID``. One round trip instead of three for
    every batch card and detail."""
    batch_id = deviations.BATCH_ID
    results = select(
        literal(_RESULT).label("kind"),
        QcResult.id.label("id"),
        QcResult.test,
        QcResult.value,
        QcResult.within_spec,
        QcResult.entered_by_id,
        QcResult.verified_by_id,
        QcResult.record_hash,
        qc.covered_by_accepted_deviation(),
        QcResult.unit,
        QcResult.limit,
    ).where(QcResult.batch_id == batch_id)
    unused = [null()] * 9  # the result's columns after its id
    open_ = select(literal(_OPEN), Deviation.id, *unused).where(deviations.is_open_on(batch_id))
    took_part = (
        select(BatchEvent.actor_id, BatchEvent.type)
        .where(BatchEvent.batch_id == batch_id, BatchEvent.type.in_(PARTICIPATION))
        .distinct()
        .subquery()
    )
    participants = select(literal(_TOOK_PART), took_part.c.actor_id, took_part.c.type, *unused[1:])
    return union_all(results, open_, participants).order_by(literal_column("id"))


_FACTS = _facts_query()  # built once: per request, building it cost more than the database's work on it


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
