"""Reads for the FHIR API (R-FHIR-1): batches as products, dispatches as dispenses, with the API's access rules.

Every read goes through ``batches.get`` or the clinic filter of ``batches.search``, so a
clinic's token sees only its own products and another clinic's product answers exactly
as a missing one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.documents import fhir as resources
from labtrack.documents.fhir import DispenseView, Person, ProductView
from labtrack.documents.wording import TISSUE_WORDS
from labtrack.domain.actors import Action, Actor, Role, require
from labtrack.domain.din import parse_din
from labtrack.domain.errors import InvalidDin, NotFound, ValidationFailed
from labtrack.domain.lifecycle import Status
from labtrack.domain.release import READY_STATUSES
from labtrack.domain.specifications import transport_range
from labtrack.models import Batch, BatchEvent, Clinic, Patient, QcResult, User
from labtrack.services import batches, scope

MAX_COUNT = 200


@dataclass(frozen=True)
class Token:
    """A FHIR token search value: ``value`` or ``system|value``."""

    system: str | None
    value: str

    @classmethod
    def parse(cls, text: str, name: str) -> Token:
        system, bar, value = text.partition("|")
        token = cls(system or None, value) if bar else cls(None, text)
        if not token.value.strip():
            raise ValidationFailed({name: ["give a value, or system|value"]})
        return token


def _person(user: User) -> Person:
    return Person(user.username, user.full_name)


def product_view(session: Session, batch: Batch, facility: str) -> ProductView:
    """What the FHIR resources of a batch say: its harvest, collector, measured values and last change."""
    events = list(
        session.execute(
            select(BatchEvent)
            .where(BatchEvent.batch_id == batch.id, BatchEvent.type == "harvest")
            .order_by(BatchEvent.seq)
        ).scalars()
    )
    harvest = batches.step_values(session, batch, "harvest") or {}
    collector = _person(events[0].actor) if events else None
    last_updated = session.execute(
        select(BatchEvent.recorded_at).where(BatchEvent.batch_id == batch.id, BatchEvent.seq == batch.seq)
    ).scalar_one()
    measured = {
        test: value["v"]
        for test, value in session.execute(
            select(QcResult.test, QcResult.value)
            .where(QcResult.batch_id == batch.id, QcResult.test.in_(("viability_pct", "tnc_total")))
            .order_by(QcResult.id)
        )
    }
    low, high = transport_range(batch.specification.body)
    status = Status(batch.status)
    return ProductView(
        din=batch.din,
        facility=facility,
        clinic=batch.clinic.code,
        clinic_name=batch.clinic.name,
        mrn=batch.patient.mrn,
        product=batch.product,
        product_words=f"{batch.product}, autologous, from {TISSUE_WORDS[batch.tissue_source].lower()} "
        "(text only: no licensed ISBT 128 product code)",
        available=status in READY_STATUSES and not batch.held,
        status=batch.status + (", held" if batch.held else ""),
        last_updated=last_updated,
        expires_at=batch.expires_at,
        collector=collector,
        collected_start=datetime.fromisoformat(harvest["started_at"]) if harvest.get("started_at") else None,
        collected_end=datetime.fromisoformat(harvest["ended_at"]) if harvest.get("ended_at") else None,
        storage_low_c=low,
        storage_high_c=high,
        viability_pct=_number(measured.get("viability_pct")),
        tnc_total=_number(measured.get("tnc_total")),
        conditional_release=batch.conditional_release,
    )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def read_product(session: Session, actor: Actor, din: str, facility: str) -> dict:
    """``GET /fhir/BiologicallyDerivedProduct/{din}``: another clinic's product is 404, as a missing one."""
    return resources.product(product_view(session, _batch(session, actor, din), facility))


def _batch(session: Session, actor: Actor, din: str) -> Batch:
    try:
        return batches.get(session, actor, din)
    except InvalidDin:
        raise NotFound("No such BiologicallyDerivedProduct.") from None
    except NotFound:
        raise NotFound("No such BiologicallyDerivedProduct.") from None


@dataclass(frozen=True)
class ProductSearch:
    patient: Token | None = None
    identifier: Token | None = None
    status: str | None = None
    count: int = 50
    cursor: int | None = None


def search_products(
    session: Session, actor: Actor, search: ProductSearch, facility: str
) -> tuple[list[dict], int | None]:
    """Products of one patient (by MRN) or one DIN, newest first; returns the page and the next cursor."""
    require(actor, Action.READ_BATCH)
    if search.patient is None and search.identifier is None:
        raise ValidationFailed(
            {"patient.identifier": ["name a patient (patient.identifier) or a product (identifier)"]}
        )
    query = select(Batch).join(Patient, Patient.id == Batch.patient_id).join(Clinic, Clinic.id == Batch.clinic_id)
    query = scope.visible(query, actor, Batch.clinic_id)
    if search.patient is not None:
        query = query.where(Patient.mrn == search.patient.value)
        if search.patient.system is not None:
            clinic = _clinic_of_system(session, search.patient.system, facility)
            query = query.where(Batch.clinic_id == (clinic.id if clinic else -1))
    if search.identifier is not None:
        if search.identifier.system not in (None, resources.DIN_SYSTEM):
            return [], None
        try:
            query = query.where(Batch.din == parse_din(search.identifier.value).value)
        except InvalidDin:
            return [], None
    if search.status is not None:
        ready = [s.value for s in READY_STATUSES]
        query = (
            query.where(Batch.status.in_(ready), Batch.held.is_(False))
            if search.status == "available"
            else query.where((Batch.status.not_in(ready)) | Batch.held.is_(True))
        )
    if search.cursor is not None:
        query = query.where(Batch.id < search.cursor)
    rows = list(session.execute(query.order_by(Batch.id.desc()).limit(search.count + 1)).unique().scalars())
    page, more = rows[: search.count], len(rows) > search.count
    return [resources.product(product_view(session, b, facility)) for b in page], (page[-1].id if more else None)


def _clinic_of_system(session: Session, system: str, facility: str) -> Clinic | None:
    for clinic in session.execute(select(Clinic)).scalars():
        if resources.mrn_system(facility, clinic.code) == system:
            return clinic
    return None


def dispense_views(session: Session, batch: Batch, facility: str) -> list[DispenseView]:
    """Each dispatch to the clinic (a hand-off from the lab after release) with its receipt and administration."""
    stream = batches.events(session, batch)
    clinic_users = set(session.execute(select(User.username).where(User.role == Role.CLINIC.value)).scalars())
    views: list[dict] = []
    released_at = None
    for event in stream:
        if event.type == "released":
            released_at = event.occurred_at
        elif event.type == "handoff" and released_at is not None and event.data.get("to") in clinic_users:
            views.append(
                {"seq": event.seq, "at": event.occurred_at, "by": _person(event.actor), "received": None, "given": None,
                 "updated": event.recorded_at}
            )  # fmt: skip
        elif views and event.type == "receipt" and views[-1]["received"] is None:
            views[-1] |= {"received": (event.occurred_at, _person(event.actor)), "updated": event.recorded_at}
        elif views and event.type == "administration":
            values = batches.step_values(session, batch, "administration") or {}
            given = {"at": event.occurred_at.isoformat(), "by": event.actor.full_name} | values
            views[-1] |= {"given": (given, _person(event.actor)), "updated": event.recorded_at}
    out = []
    for found in views:
        performers = [("dispatched", found["by"])]
        received_at, receiver = found["received"] or (None, None)
        if receiver:
            performers.append(("received", receiver))
        if found["given"]:
            performers.append(("administered", found["given"][1]))
        out.append(
            DispenseView(
                id=f"{batch.din}-{found['seq']}",
                din=batch.din,
                facility=facility,
                clinic=batch.clinic.code,
                clinic_name=batch.clinic.name,
                mrn=batch.patient.mrn,
                in_transit=found["received"] is None,
                released_at=released_at,
                dispatched_at=found["at"],
                last_updated=found["updated"],
                dispatcher=found["by"],
                receiver=receiver,
                received_at=received_at,
                administered=found["given"][0] if found["given"] else None,
                performers=performers,
            )
        )
    return out


def search_dispenses(session: Session, actor: Actor, product: str, facility: str) -> list[dict]:
    """``?product=BiologicallyDerivedProduct/{din}`` (or the DIN): its dispatches; none for a product not seen."""
    din = product.rstrip("/").rsplit("/", 1)[-1]
    try:
        batch = _batch(session, actor, din)
    except NotFound:
        return []
    return [resources.dispense(view) for view in dispense_views(session, batch, facility)]


def read_dispense(session: Session, actor: Actor, dispense_id: str, facility: str) -> dict:
    """``GET /fhir/BiologicallyDerivedProductDispense/{DIN}-{seq}``: one dispatch; none, or another clinic's, is 404."""
    din, _, _seq = dispense_id.rpartition("-")
    try:
        views = dispense_views(session, _batch(session, actor, din), facility) if din else []
    except NotFound:
        views = []
    for view in views:
        if view.id == dispense_id:
            return resources.dispense(view)
    raise NotFound("No such BiologicallyDerivedProductDispense.")
