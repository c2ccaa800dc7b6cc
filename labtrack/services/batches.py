"""Batches: registration with DIN allocation, reads scoped by clinic, and the state snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, joinedload, lazyload, selectinload

from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, require, sees_clinic
from labtrack.domain.din import Din, format_din, parse_din
from labtrack.domain.errors import NotFound, ValidationFailed
from labtrack.domain.hashing import GENESIS_HASH
from labtrack.domain.lifecycle import TERMINAL, Status
from labtrack.domain.process import PROCESSES, TissueSource
from labtrack.domain.timing import check_planned_administration
from labtrack.models import Batch, BatchEvent, Clinic, DinCounter, Patient, User
from labtrack.services import paging, patients, scope, specifications
from labtrack.services.streams import append_batch_event


def allocate_din(session: Session, facility: str, year: int) -> Din:
    """Next DIN for the facility and year (R-DIN-1); the counter row's lock keeps it unique."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(DinCounter).values(facility=facility, year=year, last_sequence=0).on_conflict_do_nothing())
    sequence = session.execute(
        update(DinCounter)
        .where(DinCounter.facility == facility, DinCounter.year == year)
        .values(last_sequence=DinCounter.last_sequence + 1)
        .returning(DinCounter.last_sequence)
    ).scalar_one()
    return format_din(facility, year, sequence)


def register(
    session: Session,
    actor: Actor,
    *,
    facility: str,
    patient_id: int,
    tissue_source: str,
    planned_administration_at: datetime | None = None,
) -> Batch:
    """Register one autologous product for one patient; the registration opens its stream."""
    require(actor, Action.REGISTER_BATCH)
    patient = session.get(Patient, patient_id)
    if patient is None or not sees_clinic(actor, patient.clinic_id):
        raise ValidationFailed({"patient_id": ["no such patient"]})
    source = TissueSource(tissue_source)
    if planned_administration_at is not None and planned_administration_at.tzinfo is None:
        raise ValidationFailed({"planned_administration_at": ["must carry a timezone offset"]})
    now = utcnow()
    check_planned_administration(planned_administration_at, now=now)
    spec = specifications.current(session, source)
    din = allocate_din(session, facility, now.year)
    batch = Batch(
        din=din.value,
        patient_id=patient.id,
        clinic_id=patient.clinic_id,
        tissue_source=source.value,
        product=PROCESSES[source].product,
        specification_id=spec.id,
        status=Status.REGISTERED.value,
        steps_done=[],
        planned_administration_at=planned_administration_at,
        registered_at=now,
        seq=0,
        head_hash=GENESIS_HASH,
    )
    session.add(batch)
    session.flush()
    append_batch_event(
        session,
        batch,
        actor,
        "registered",
        {
            "patient_id": patient.id,
            "clinic": patient.clinic.code,
            "tissue_source": source.value,
            "product": batch.product,
            "specification_version": spec.version,
            "planned_administration_at": planned_administration_at,
        },
        recorded_at=now,
    )
    return batch


def find(
    session: Session,
    din_text: str,
    *,
    for_update: bool = False,
    with_specification: bool = False,
    with_parties: bool = False,
) -> Batch | None:
    """The batch with this DIN (any R-DIN-3 form), unscoped: callers check access.

    ``with_specification`` joins the batch's specification version, and ``with_parties`` its patient
    and clinic, for a caller that reads them anyway (one round trip instead of two or three).
    """
    din = parse_din(din_text)
    # The row and its custodian, which every state check reads; the other relations load on first
    # use. Joining all of them eagerly made a ten-table query that took ~2 ms to plan per request.
    options = [lazyload("*"), joinedload(Batch.custodian).lazyload(User.clinic)]
    if with_specification:
        options.append(joinedload(Batch.specification))
    if with_parties:
        options.extend((joinedload(Batch.patient), joinedload(Batch.clinic)))
    query = select(Batch).options(*options).where(Batch.din == din.value)
    if for_update:
        # A per-batch row lock on PostgreSQL: writers on one batch queue, others never wait.
        query = query.with_for_update(of=Batch)
    return session.execute(query).unique().scalar_one_or_none()


def get(
    session: Session,
    actor: Actor,
    din_text: str,
    *,
    for_update: bool = False,
    with_specification: bool = False,
    with_parties: bool = False,
) -> Batch:
    """The batch an actor may see; another clinic's batch is 404, not 403 (R-ACC-1)."""
    batch = find(
        session, din_text, for_update=for_update, with_specification=with_specification, with_parties=with_parties
    )
    if batch is None:
        raise NotFound("No such batch.")
    require(actor, Action.READ_BATCH, batch.clinic_id, what="batch")
    return batch


@dataclass(frozen=True)
class BatchFilter:
    status: str | None = None
    clinic: str | None = None
    tissue_source: str | None = None
    held: bool | None = None
    waiting_for: int | None = None  # a user id: batches handed to them, or in their custody and still moving
    patient: str | None = None  # part of a name, an MRN, or a birth date (YYYY-MM-DD)


# What a list shows of each batch, loaded in one query per relation for the whole page (R-SCL-4: no
# relationship loads by default).
LIST_LOADS = (selectinload(Batch.patient), selectinload(Batch.clinic), selectinload(Batch.custodian))


def search(
    session: Session, actor: Actor, filters: BatchFilter, *, limit: int = paging.LIMIT_DEFAULT, after: str | None = None
) -> paging.Page[Batch]:
    """Batches the actor may see, newest first, one keyset page at a time (R-SCL-4)."""
    query = filtered(actor, filters).options(*LIST_LOADS)
    return paging.page(session, query, Batch.id, limit=limit, after=after, unique=True)


def filtered(actor: Actor, filters: BatchFilter) -> Select:
    """The batches the actor may see that match ``filters``, unordered (lists and exports page it)."""
    require(actor, Action.READ_BATCH)
    query = scope.visible(select(Batch), actor, Batch.clinic_id)
    if filters.clinic:
        query = query.join(Clinic, Clinic.id == Batch.clinic_id).where(Clinic.code == filters.clinic.upper())
    if filters.status:
        query = query.where(Batch.status == filters.status)
    if filters.tissue_source:
        query = query.where(Batch.tissue_source == filters.tissue_source)
    if filters.held is not None:
        query = query.where(Batch.held.is_(filters.held))
    if filters.waiting_for is not None:
        mine = (Batch.custodian_id == filters.waiting_for) & Batch.transfer_to_id.is_(None)
        query = query.where(
            (Batch.transfer_to_id == filters.waiting_for) | (mine & Batch.status.not_in([s.value for s in TERMINAL]))
        )
    if filters.patient:
        query = query.where(Batch.patient_id.in_(patients.matching(filters.patient)))
    return query


def listing(session: Session, actor: Actor, args: dict[str, Any]) -> paging.Page[Batch]:
    """``search`` by the list's query arguments (``BatchQueryArgsSchema``), the API's and the bench's."""
    args = dict(args)
    paged = {"limit": args.pop("limit", paging.LIMIT_DEFAULT), "after": args.pop("after", None)}
    return search(session, actor, filter_of(actor, args), **paged)


def filter_of(actor: Actor, args: dict[str, Any]) -> BatchFilter:
    """A ``BatchFilter`` from the list's query arguments, without the paging ones."""
    waiting = args.get("waiting_for_me", False)
    wanted = {k: v for k, v in args.items() if k not in ("waiting_for_me", "limit", "after", "format")}
    return BatchFilter(**wanted, waiting_for=actor.id if waiting else None)


def events(session: Session, batch: Batch) -> list[BatchEvent]:
    """The stream in order, with each event's actor; each event carries ``corrected_by``: the seqs of
    corrections to it (R-COR-1)."""
    query = select(BatchEvent).options(joinedload(BatchEvent.actor)).where(BatchEvent.batch_id == batch.id)
    stream = list(session.execute(query.order_by(BatchEvent.seq)).scalars())
    corrections: dict[int, list[int]] = {}
    for event in stream:
        if event.type == "correction":
            corrections.setdefault(event.data["corrects_seq"], []).append(event.seq)
    for event in stream:
        event.corrected_by = corrections.get(event.seq, [])
    return stream


def step_values(session: Session, batch: Batch, step: str) -> dict[str, Any] | None:
    """A step's recorded values with every later correction applied (R-COR-1), or None if not done."""
    rows = session.execute(
        select(BatchEvent)
        .where(BatchEvent.batch_id == batch.id, BatchEvent.type.in_((step, "correction")))
        .order_by(BatchEvent.seq)
    ).scalars()
    values: dict[str, Any] | None = None
    step_seq = None
    for event in rows:
        if event.type == step:
            values, step_seq = dict(event.data.get("values", {})), event.seq
        elif values is not None and event.data.get("corrects_seq") == step_seq:
            values.update({name: change["new"] for name, change in event.data["changes"].items()})
    return values
