"""Deviations: opened on the batch's stream, holding the batch while open (R-DEV-1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Select, and_, bindparam, select
from sqlalchemy.orm import Session

from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.deviations import DeviationKind, DeviationStatus
from labtrack.domain.errors import ValidationFailed
from labtrack.models import Batch, Deviation
from labtrack.services import batches, outbox, paging, scope
from labtrack.services.streams import append_batch_event


def open_on(
    session: Session,
    batch: Batch,
    actor: Actor,
    kind: str,
    description: str,
    *,
    occurred_at: datetime | None = None,
    qc_result_id: int | None = None,
) -> Deviation:
    """Open a deviation inside the current unit of work; the batch is held unless already administered."""
    data: dict[str, object] = {"kind": kind, "description": description}
    if qc_result_id is not None:
        data["qc_result_id"] = qc_result_id
    deviation = _add(session, batch, actor, data, occurred_at=occurred_at)
    session.flush()
    _announce(session, deviation)
    return deviation


def open_for_lookback(
    session: Session, held: Sequence[Batch], actor: Actor, lookback_id: int, description: str
) -> list[Deviation]:
    """A ``lookback`` deviation naming the lookback on each batch (loaded under its row lock by the caller), in
    one flush: each event follows its own batch's chain head, and the events, the heads, the deviations and their
    outbox rows are each one multi-row statement (R-LBK-2)."""
    data = {"kind": DeviationKind.LOOKBACK.value, "description": description, "lookback_id": lookback_id}
    opened = [_add(session, batch, actor, data) for batch in held]
    session.flush()
    for deviation in opened:
        _announce(session, deviation)
    return opened


def _add(
    session: Session, batch: Batch, actor: Actor, data: dict[str, object], *, occurred_at: datetime | None = None
) -> Deviation:
    """The deviation's event on the batch's chain and its projection, holding the batch; not flushed."""
    event = append_batch_event(session, batch, actor, "deviation_opened", data, occurred_at=occurred_at, flush=False)
    deviation = Deviation(
        batch=batch,  # the loaded batch, so that showing the deviation does not read it again
        kind=data["kind"],
        description=data["description"],
        status=DeviationStatus.OPEN.value,
        opened_by_id=actor.id,
        opened_at=event.recorded_at,
        opened_seq=event.seq,
        qc_result_id=data.get("qc_result_id"),
    )
    session.add(deviation)
    batch.held = batch.status != "administered"
    return deviation


def _announce(session: Session, deviation: Deviation) -> None:
    payload = {"deviation_id": deviation.id, "kind": deviation.kind, "description": deviation.description}
    outbox.enqueue(session, "deviation.opened", deviation.batch, payload | {"seq": deviation.opened_seq})


def open_manual(session: Session, actor: Actor, din: str, *, kind: str, description: str) -> Deviation:
    """Open a manual deviation on a batch (R-DEV-1); refuses any other kind and an empty description."""
    require(actor, Action.OPEN_DEVIATION)
    batch = batches.get(session, actor, din, for_update=True)
    if kind != DeviationKind.MANUAL:
        raise ValidationFailed({"kind": ["only manual deviations are opened by hand; the others open themselves"]})
    if not description.strip():
        raise ValidationFailed({"description": ["is required"]})
    return open_on(session, batch, actor, kind, description.strip())


BATCH_ID = bindparam("batch_id")  # the batch of a statement built once, bound when it runs


def is_open_on(batch_id: ColumnElement | int) -> ColumnElement:
    """SQL: the deviation is open and on the batch ``batch_id`` (an id, or ``BATCH_ID``)."""
    return and_(Deviation.batch_id == batch_id, Deviation.status == DeviationStatus.OPEN.value)


def for_batch(session: Session, batch_id: int) -> list[Deviation]:
    """The batch's deviations, open and closed, oldest first."""
    return list(
        session.execute(select(Deviation).where(Deviation.batch_id == batch_id).order_by(Deviation.id)).scalars()
    )


def opened_after(session: Session, batch_id: int, seq: int) -> list[Deviation]:
    """The deviations an event opened: those of the batch opened after its event ``seq``."""
    query = select(Deviation).where(Deviation.batch_id == batch_id, Deviation.opened_seq > seq)
    return list(session.execute(query.order_by(Deviation.id)).scalars())


def search(
    session: Session,
    actor: Actor,
    *,
    status: str | None = None,
    din: str | None = None,
    limit: int = paging.LIMIT_DEFAULT,
    after: str | None = None,
) -> paging.Page[Deviation]:
    """Deviations, newest first, a keyset page at a time (R-SCL-4)."""
    query = filtered(session, actor, status=status, din=din)
    return paging.page(session, query, Deviation.id, limit=limit, after=after, unique=True)


def filtered(session: Session, actor: Actor, *, status: str | None = None, din: str | None = None) -> Select:
    """The deviations the actor may list that match, unordered (lists and exports page it)."""
    require(actor, Action.LIST_DEVIATIONS)
    query = scope.visible(select(Deviation), actor, Batch.clinic_id, join=Batch)
    if status:
        query = query.where(Deviation.status == status)
    if din:
        batch = batches.get(session, actor, din)
        query = query.where(Deviation.batch_id == batch.id)
    return query
