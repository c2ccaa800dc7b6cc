"""Views for the printed documents: labels (each print an event) and the batch record (requirements §8)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.documents import wording
from labtrack.documents.labels import LabelView
from labtrack.documents.record import RecordView
from labtrack.domain import stages as stepper
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import LabelKind, check_label
from labtrack.domain.din import Din
from labtrack.domain.lifecycle import Status
from labtrack.domain.specifications import transport_range
from labtrack.models import Batch
from labtrack.services import batches, deviations, qc, temperatures
from labtrack.services.streams import append_batch_event


def print_label(
    session: Session, actor: Actor, din: str, *, kind: str, facility: str, zone: str, format: str = "pdf"
) -> LabelView:
    """A product label only for a released batch; a collection label until then. Each print is an event
    (a ZPL download too: whoever downloads it sends it to a printer)."""
    batch = batches.get(session, actor, din, for_update=True)
    view = label_view(batch, actor, kind=kind, facility=facility, zone=zone)
    data = {"kind": kind} | ({} if format == "pdf" else {"format": format})
    append_batch_event(session, batch, actor, "label_printed", data)
    return view


def label_view(batch: Batch, actor: Actor, *, kind: str, facility: str, zone: str) -> LabelView:
    """What a label of ``kind`` shows, if ``actor`` may print it now (R-ZPL-1 prints the same view as ZPL)."""
    require(actor, Action.PRINT_LABEL, batch.clinic_id, what="batch")
    check_label(Status(batch.status), kind)
    code = Din(batch.din)
    low, high = transport_range(batch.specification.body)
    patient = batch.patient
    product = kind == LabelKind.PRODUCT
    return LabelView(
        kind=kind,
        din=batch.din,
        din_body=code.display[:-2],
        check_character=code.check,
        barcode_data=code.barcode_data,
        patient_name=f"{patient.family_name.upper()}, {patient.given_name}",
        birth_date=patient.birth_date.isoformat(),
        facility=facility,
        clinic=batch.clinic.code,
        tissue=wording.TISSUE_WORDS[batch.tissue_source],
        product=batch.product if product else None,
        expires=wording.local_time(batch.expires_at, zone) if product else None,
        storage=f"{low:g}–{high:g} °C" if product else None,
        conditional=product and batch.conditional_release,
    )


def record_view(
    session: Session, actor: Actor, batch: Batch, *, zone: str, chain: Any, checkpoint: Any | None
) -> RecordView:
    """The batch record as QA reviews it, for the page and the PDF (QA; the batch's own clinic), of ``batch``
    (from ``batches.get``, best with its specification and parties), closed by ``chain`` (the batch's
    ``audit.chains.Report``) and ``checkpoint`` (the newest), which the caller verified and read
    (``labtrack.audit.records``). The words are ``documents.wording``'s."""
    require(actor, Action.READ_RECORD, batch.clinic_id, what="batch")
    events, custody, signatures, sign_off = wording.event_rows(batches.events(session, batch), zone)
    return RecordView(
        din=batch.din,
        din_display=Din(batch.din).display,
        facts=wording.facts(batch, zone),
        events=events,
        qc=[wording.qc_row(result, zone) for result in qc.results(session, batch)],
        custody=custody,
        deviations=[wording.deviation_row(d, zone) for d in deviations.for_batch(session, batch.id)],
        signatures=signatures,
        verification=wording.verification_line(chain, batch),
        checkpoint=wording.checkpoint_rows(checkpoint, zone),
        generated=wording.generated(utcnow(), actor, zone),
        stages=stepper.stages(Status(batch.status), tuple(batch.steps_done or ()), batch.released_at),
        sign_off=sign_off,
        temperatures=temperatures.leg_views(session, batch),
        zone=zone,
    )
