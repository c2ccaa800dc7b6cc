"""Lookbacks (R-LBK-1..5): from a seed to every batch it may touch; hold, tell, acknowledge, close.

The affected batches are found in ``batch_uses`` (``labtrack.services.uses``), by index,
never by reading event JSON. Opening one holds every affected batch that may still reach a
patient with a ``lookback`` deviation on its own chain (disposed of one by one, R-DEV-2),
and tells each clinic of its own DINs only. A lookback is a lab-level record: its opening,
each clinic's acknowledgement and QA's signed closing are events on the admin chain, the
closing signature bound to the opening event's hash.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, insert, or_, select
from sqlalchemy.orm import Session, joinedload, lazyload

from labtrack.clock import utcnow
from labtrack.db import rows_by_id
from labtrack.domain.actors import Action, Actor, clinic_scope, require, sees_clinic
from labtrack.domain.din import parse_din
from labtrack.domain.errors import Conflict, InvalidDin, NotFound, ValidationFailed
from labtrack.domain.hashing import iso_utc
from labtrack.domain.investigations import (
    SHARED_EQUIPMENT_WINDOW as NEAR,
)
from labtrack.domain.investigations import (
    AffectedAction,
    LookbackStatus,
    SeedKind,
    Trigger,
    Window,
    affected_action,
    check_window,
)
from labtrack.domain.lifecycle import Status
from labtrack.domain.materials import LotStatus, check_settable_lot_status
from labtrack.domain.signatures import Meaning
from labtrack.models import (
    Batch,
    BatchUse,
    Clinic,
    Equipment,
    Lookback,
    LookbackBatch,
    LookbackClinic,
    ReagentLot,
    User,
)
from labtrack.services import deviations, outbox, scope, signatures
from labtrack.services.streams import append_admin_event
from labtrack.services.watchers import watcher_actor

STREAM_KEY = "lookback:{}"


@dataclass(frozen=True)
class Seed:
    kind: SeedKind
    value: str  # as given: lot id, equipment code, username, DIN (13 characters)
    ref: int | str  # what batch_uses is searched by: lot id, code, user id, batch id


@dataclass(frozen=True)
class Affected:
    din: str
    clinic: str
    status: str  # now
    status_at_opening: str
    action: str
    deviation_id: int | None

    @property
    def administered(self) -> bool:
        return self.status == Status.ADMINISTERED


@dataclass
class LookbackView:
    """A lookback as one actor may see it: a clinic sees only its own batches and its own answer."""

    lookback: Lookback
    affected: list[Affected]
    clinics: list[LookbackClinic]
    seed_value: str | None  # hidden from a clinic when it names another clinic's batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.lookback, name)


def resolve_seed(session: Session, kind: SeedKind, value: str) -> Seed:
    """The seed's row, or 422 naming what does not exist."""
    value = value.strip()
    found: int | str | None = None
    if kind == SeedKind.REAGENT_LOT:
        lot_id = int(value) if value.isdigit() and len(value) < 10 else None
        found = session.execute(select(ReagentLot.id).where(ReagentLot.id == lot_id)).scalar_one_or_none()
        what = f"no reagent lot with id {value!r}"
    elif kind == SeedKind.EQUIPMENT:
        found = session.execute(select(Equipment.code).where(Equipment.code == value)).scalar_one_or_none()
        what = f"no equipment with code {value!r}"
    elif kind == SeedKind.OPERATOR:
        found = session.execute(select(User.id).where(User.username == value)).scalar_one_or_none()
        what = f"no user {value!r}"
    else:
        try:
            value = parse_din(value).value
        except InvalidDin as error:
            raise ValidationFailed({"seed.value": [error.detail]}) from error
        found = session.execute(select(Batch.id).where(Batch.din == value)).scalar_one_or_none()
        what = f"no batch {value}"
    if found is None:
        raise ValidationFailed({"seed.value": [what]})
    return Seed(kind, value, found)


def affected_query(session: Session, seed: Seed, window: Window) -> Select:
    """R-LBK-1: the ids of the batches linked to the seed, as one indexed query on ``batch_uses``."""
    use = BatchUse
    if seed.kind == SeedKind.BATCH:
        linked = [use.batch_id != seed.ref]
        own = session.execute(
            select(use.reagent_lot_id, use.equipment_code, use.occurred_at).where(
                use.batch_id == seed.ref, use.user_id.is_(None)
            )
        ).all()
        lots = sorted({row.reagent_lot_id for row in own if row.reagent_lot_id is not None})
        shared = [use.reagent_lot_id.in_(lots)] if lots else []
        shared += [
            and_(
                use.equipment_code == row.equipment_code,
                use.occurred_at.between(row.occurred_at - NEAR, row.occurred_at + NEAR),
            )
            for row in own
            if row.equipment_code is not None
        ]
        linked.append(or_(*shared) if shared else use.batch_id.is_(None))
    else:
        column = {
            SeedKind.REAGENT_LOT: use.reagent_lot_id,
            SeedKind.EQUIPMENT: use.equipment_code,
            SeedKind.OPERATOR: use.user_id,
        }[seed.kind]
        linked = [column == seed.ref]
        if window.start is not None:
            linked.append(use.occurred_at >= window.start)
        if window.end is not None:
            linked.append(use.occurred_at <= window.end)
    return select(use.batch_id).where(*linked).distinct()


def find_affected(session: Session, seed: Seed, window: Window) -> list[tuple[int, str, int, str]]:
    """(id, DIN, clinic id, status) of every affected batch, in id order (the order they are locked in).

    The ids come first (an index-only scan of ``batch_uses``), then those batches by primary key
    (``rows_by_id``): the cost follows the batches found, even for a large finding (a technician's month)."""
    ids = sorted(session.execute(affected_query(session, seed, window)).scalars())
    found = select(Batch.id, Batch.din, Batch.clinic_id, Batch.status).order_by(Batch.id)
    rows = rows_by_id(session, lambda part: found.where(Batch.id.in_(part)), ids)
    return [(row.id, row.din, row.clinic_id, row.status) for row in rows]


def open_lookback(
    session: Session,
    opener: Actor,
    *,
    kind: SeedKind,
    value: str,
    reason: str,
    window: Window,
    trigger: Trigger,
    requested_by: str,
) -> Lookback:
    """Open a lookback inside the current unit of work: find, hold, record, tell (R-LBK-1, R-LBK-2)."""
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": ["is required"]})
    seed = resolve_seed(session, kind, value)
    now = utcnow()
    lookback = Lookback(
        status=LookbackStatus.OPEN.value,
        reason=reason,
        seed_kind=kind.value,
        seed_value=seed.value,
        window_from=window.start,
        window_to=window.end,
        trigger=trigger.value,
        requested_by=requested_by,
        opened_by_id=opener.id,
        opened_at=now,
        opened_hash="",
    )
    session.add(lookback)
    session.flush()
    found = find_affected(session, seed, window)
    rows = _hold(session, opener, lookback, found)
    if rows:
        session.execute(insert(LookbackBatch), [row for row, _din in rows])
    opened = append_admin_event(
        session,
        opener.username,
        "lookback_opened",
        {
            "key": STREAM_KEY.format(lookback.id),
            "old": None,
            "new": {
                "reason": reason,
                "seed": {"kind": kind.value, "value": seed.value},
                "from": iso_utc(window.start) if window.start else None,
                "to": iso_utc(window.end) if window.end else None,
                "trigger": trigger.value,
                "requested_by": requested_by,
                "affected": [{"din": din, "action": row["action"]} for row, din in rows],
            },
        },
    )
    lookback.opened_hash = opened.hash
    _tell_clinics(session, lookback, rows, seed, now)
    if trigger != Trigger.QA:
        payload = {"lookback_id": lookback.id, "trigger": trigger.value, "affected": len(rows)}
        outbox.enqueue(session, "lookback.auto_opened", None, payload)
    session.flush()
    return lookback


def _holdable(status: str) -> bool:
    return affected_action(Status(status)) == AffectedAction.HELD


def _hold(
    session: Session, opener: Actor, lookback: Lookback, found: list[tuple[int, str, int, str]]
) -> list[tuple[dict[str, Any], str]]:
    """R-LBK-2: hold each affected batch that, read again under its row lock, may still reach a patient.

    The batches are locked in one statement in id order (as every multi-batch writer locks them, so
    two lookbacks on the same batches queue instead of deadlocking), and all their deviations are
    opened in one flush. Returns each affected batch's ``lookback_batches`` row as the values of one multi-row
    INSERT (no ORM object per batch), with its DIN, in id order.
    """
    status = {batch_id: now for batch_id, _din, _clinic, now in found}
    locked = _lock(session, [batch_id for batch_id, now in status.items() if _holdable(now)])
    status |= {batch.id: batch.status for batch in locked}
    held = [batch for batch in locked if _holdable(batch.status)]
    description = f"Lookback {lookback.id}: {lookback.reason}"
    opened = deviations.open_for_lookback(session, held, opener, lookback.id, description)
    deviation_of = {deviation.batch_id: deviation.id for deviation in opened}
    return [
        (
            {
                "lookback_id": lookback.id,
                "batch_id": batch_id,
                "clinic_id": clinic_id,
                "status_at_opening": status[batch_id],
                "action": affected_action(Status(status[batch_id])).value,
                "deviation_id": deviation_of.get(batch_id),
            },
            din,
        )
        for batch_id, din, clinic_id, _status in found
    ]


def _lock(session: Session, ids: list[int]) -> list[Batch]:
    """These batches, read again under their row locks, in id order."""
    if not ids:
        return []
    query = (
        select(Batch)
        .options(lazyload("*"))
        .where(Batch.id.in_(ids))
        .order_by(Batch.id)
        .with_for_update(of=Batch)
        .execution_options(populate_existing=True)
    )
    return list(session.execute(query).scalars())


def _tell_clinics(
    session: Session, lookback: Lookback, rows: list[tuple[dict[str, Any], str]], seed: Seed, now: datetime
) -> None:
    """R-LBK-2: each clinic hears of its own DINs, and of nothing of another clinic's."""
    by_clinic: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for row, din in rows:
        by_clinic[row["clinic_id"]].append((din, row["action"]))
    for clinic_id, own in sorted(by_clinic.items()):
        session.add(LookbackClinic(lookback_id=lookback.id, clinic_id=clinic_id, notified_at=now))
        outbox.enqueue(session, "lookback.opened", None, clinic_payload(lookback, own, seed.kind), clinic_id=clinic_id)


def clinic_payload(lookback: Lookback, own: list[tuple[str, str]], kind: SeedKind | str) -> dict[str, Any]:
    """What a clinic is told: the lookback, why, and its own batches (DIN, action) by what is asked of it."""
    return {
        "lookback_id": lookback.id,
        "reason": lookback.reason,
        "seed_kind": SeedKind(kind).value,
        "dins": [din for din, _action in own],
        "held": [din for din, action in own if action == AffectedAction.HELD],
        "administered": [din for din, action in own if action == AffectedAction.FOLLOW_UP],
    }


def clinic_batches(session: Session, lookback_id: int, clinic_id: int) -> list[tuple[str, str]]:
    """(DIN, action) of a lookback's batches at one clinic."""
    rows = session.execute(
        select(Batch.din, LookbackBatch.action)
        .join(Batch, Batch.id == LookbackBatch.batch_id)
        .where(LookbackBatch.lookback_id == lookback_id, LookbackBatch.clinic_id == clinic_id)
        .order_by(LookbackBatch.batch_id)
    )
    return [(din, action) for din, action in rows]


def open_by_qa(
    session: Session,
    actor: Actor,
    *,
    reason: str,
    seed: dict[str, str],
    from_: datetime | None = None,
    to: datetime | None = None,
) -> LookbackView:
    """R-LBK-1: QA opens a lookback from a reagent lot, an equipment item, an operator or a batch."""
    require(actor, Action.INVESTIGATE)
    kind = SeedKind(seed["kind"])
    window = check_window(kind, from_, to)
    lookback = open_lookback(
        session,
        actor,
        kind=kind,
        value=seed["value"],
        reason=reason,
        window=window,
        trigger=Trigger.QA,
        requested_by=actor.username,
    )
    return view(session, actor, lookback)


# --- reads ------------------------------------------------------------------------------------


def _visible(session: Session, actor: Actor, lookback_id: int, *, for_update: bool = False) -> Lookback:
    query = select(Lookback).options(lazyload("*")).where(Lookback.id == lookback_id)
    on = LookbackClinic.lookback_id == Lookback.id
    query = scope.visible(query, actor, LookbackClinic.clinic_id, join=LookbackClinic, on=on)
    if for_update:
        query = query.with_for_update(of=Lookback)
    lookback = session.execute(query).scalar_one_or_none()
    if lookback is None:
        raise NotFound("No such lookback.")
    return lookback


def view(session: Session, actor: Actor, lookback: Lookback) -> LookbackView:
    """The lookback with its affected batches and clinics, scoped to the actor's clinic (R-ACC-1)."""
    affected = (
        select(
            Batch.din,
            Clinic.code,
            Batch.status,
            LookbackBatch.status_at_opening,
            LookbackBatch.action,
            LookbackBatch.deviation_id,
        )
        .join(Batch, Batch.id == LookbackBatch.batch_id)
        .join(Clinic, Clinic.id == LookbackBatch.clinic_id)
        .where(LookbackBatch.lookback_id == lookback.id)
        .order_by(LookbackBatch.batch_id)
    )
    affected = scope.visible(affected, actor, LookbackBatch.clinic_id)
    clinics = (
        select(LookbackClinic)
        .options(joinedload(LookbackClinic.clinic), joinedload(LookbackClinic.acknowledged_by))
        .where(LookbackClinic.lookback_id == lookback.id)
        .order_by(LookbackClinic.clinic_id)
    )
    clinics = scope.visible(clinics, actor, LookbackClinic.clinic_id)
    seed_value: str | None = lookback.seed_value
    if lookback.seed_kind == SeedKind.BATCH and clinic_scope(actor) is not None:  # another clinic's DIN stays unsaid
        owner = session.execute(select(Batch.clinic_id).where(Batch.din == lookback.seed_value)).scalar_one()
        seed_value = lookback.seed_value if sees_clinic(actor, owner) else None
    return LookbackView(
        lookback,
        [Affected(*row) for row in session.execute(affected)],
        list(session.execute(clinics).unique().scalars()),
        seed_value,
    )


def get(session: Session, actor: Actor, lookback_id: int) -> LookbackView:
    """One lookback (QA: any; a clinic: one naming its batches, else 404)."""
    require(actor, Action.READ_INVESTIGATIONS)
    return view(session, actor, _visible(session, actor, lookback_id))


def search(session: Session, actor: Actor, *, status: str | None = None) -> list[LookbackView]:
    """Lookbacks, newest first (QA: all; a clinic: those naming its batches)."""
    require(actor, Action.READ_INVESTIGATIONS)
    query = select(Lookback).options(lazyload("*")).order_by(Lookback.id.desc())
    query = scope.visible(query, actor, LookbackClinic.clinic_id, join=LookbackClinic)
    if status:
        query = query.where(Lookback.status == status)
    return [view(session, actor, lookback) for lookback in session.execute(query).scalars()]


def for_batch(session: Session, actor: Actor, batch: Batch) -> list[tuple[Lookback, LookbackBatch]]:
    """The lookbacks that name this batch, oldest first (the batch card shows them)."""
    require(actor, Action.READ_BATCH, batch.clinic_id, what="batch")
    rows = session.execute(
        select(Lookback, LookbackBatch)
        .join(LookbackBatch, LookbackBatch.lookback_id == Lookback.id)
        .where(LookbackBatch.batch_id == batch.id)
        .order_by(Lookback.id)
    )
    return [(lookback, row) for lookback, row in rows.unique()]


def unacknowledged(session: Session, actor: Actor) -> list[LookbackView]:
    """The open lookbacks the actor's clinic has not acknowledged yet (the clinic's banner)."""
    clinic_id = clinic_scope(actor)
    if clinic_id is None:  # lab users acknowledge nothing
        return []
    query = (
        select(Lookback)
        .options(lazyload("*"))
        .join(LookbackClinic)
        .where(
            LookbackClinic.clinic_id == clinic_id,
            LookbackClinic.acknowledged_at.is_(None),
            Lookback.status == LookbackStatus.OPEN.value,
        )
        .order_by(Lookback.id)
    )
    return [view(session, actor, lookback) for lookback in session.execute(query).scalars()]


# --- answers and closing ----------------------------------------------------------------------


def acknowledge(session: Session, actor: Actor, lookback_id: int) -> LookbackView:
    """R-LBK-3: a clinic user acknowledges for the clinic; a second acknowledgement changes nothing."""
    require(actor, Action.ACKNOWLEDGE_LOOKBACK)
    lookback = _visible(session, actor, lookback_id)
    answer = session.execute(
        select(LookbackClinic)
        .options(lazyload("*"))
        .where(LookbackClinic.lookback_id == lookback_id, LookbackClinic.clinic_id == actor.clinic_id)
        .with_for_update()
    ).scalar_one()
    if answer.acknowledged_at is None:
        answer.acknowledged_at = utcnow()
        answer.acknowledged_by_id = actor.id
        append_admin_event(
            session,
            actor.username,
            "lookback_acknowledged",
            {
                "key": STREAM_KEY.format(lookback_id),
                "old": None,
                "new": {"clinic_id": actor.clinic_id, "acknowledged_at": iso_utc(answer.acknowledged_at)},
            },
        )
        session.flush()
        session.expire(answer, ["acknowledged_by"])
    return view(session, actor, lookback)


def close(
    session: Session, actor: Actor, lookback_id: int, *, conclusion: str, signature: dict[str, Any]
) -> LookbackView:
    """R-LBK-4: QA closes with a signed conclusion (meaning ``reviewed``); the batches' deviations stay open."""
    require(actor, Action.INVESTIGATE)
    lookback = _visible(session, actor, lookback_id, for_update=True)
    if lookback.status != LookbackStatus.OPEN:
        raise Conflict(f"Lookback {lookback_id} is already closed.")
    conclusion = conclusion.strip()
    if not conclusion:
        raise ValidationFailed({"conclusion": ["is required"]})
    signed = signatures.sign(session, actor, signature, Meaning.REVIEWED, lookback.opened_hash, None)
    append_admin_event(
        session,
        actor.username,
        "lookback_closed",
        {
            "key": STREAM_KEY.format(lookback_id),
            "old": {"status": "open"},
            "new": {"status": "closed", "conclusion": conclusion, "signature": signed},
        },
    )
    lookback.status = LookbackStatus.CLOSED.value
    lookback.conclusion = conclusion
    lookback.closed_by_id = actor.id
    lookback.closed_at = utcnow()
    lookback.signature = signed
    session.flush()
    session.expire(lookback, ["closed_by", "opened_by"])
    return view(session, actor, lookback)


# --- recall (R-LBK-5) -------------------------------------------------------------------------


def recall_lot(session: Session, actor: Actor, lot_id: int, *, reason: str) -> tuple[ReagentLot, Lookback]:
    """An admin recalls a reagent lot: refused in steps from now on, and a lookback seeded with it.

    Admins have no batch authority (R-ACC-2), so the lookback and its holds are written by the
    ``system`` user, naming the admin as the one who asked.
    """
    require(actor, Action.MANAGE_REFERENCE)
    lot = session.get(ReagentLot, lot_id, with_for_update=True)
    if lot is None:
        raise NotFound(f"No reagent lot {lot_id}.")
    status = check_settable_lot_status(lot.lot_number, LotStatus(lot.status), LotStatus.RECALLED, recall_reason=reason)
    reason = reason.strip()
    old = {"status": lot.status}
    lot.status = status.value
    new = {"status": lot.status, "reason": reason}
    append_admin_event(session, actor.username, "reagent_lot_recalled", {"key": str(lot.id), "old": old, "new": new})
    lookback = open_lookback(
        session,
        watcher_actor(session),
        kind=SeedKind.REAGENT_LOT,
        value=str(lot.id),
        reason=f"Recall of {lot.kind} lot {lot.lot_number}: {reason}",
        window=Window(None, None),
        trigger=Trigger.RECALL,
        requested_by=actor.username,
    )
    return lot, lookback
