"""Views for the printed documents: labels (each print an event) and the batch record (requirements §8)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from labtrack import glossary
from labtrack.audit import chains, checkpoints
from labtrack.clock import utcnow
from labtrack.documents.labels import LabelView
from labtrack.documents.record import RecordView
from labtrack.domain import stages as stepper
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import check_label
from labtrack.domain.din import Din
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import PROCESSES
from labtrack.domain.specifications import transport_range
from labtrack.models import Batch
from labtrack.services import batches, deviations, qc, temperatures
from labtrack.services.streams import append_batch_event

TISSUE_WORDS = {"adipose": "Adipose lipoaspirate", "bone_marrow": "Bone marrow aspirate"}


def _local(moment: Any, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


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
    product = kind == "product"
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
        tissue=TISSUE_WORDS[batch.tissue_source],
        product=batch.product if product else None,
        expires=_local(batch.expires_at, zone) if product else None,
        storage=f"{low:g}–{high:g} °C" if product else None,
        conditional=product and batch.conditional_release,
    )


# Units of step data, by field name, for the record's details.
UNITS = {f.name: f.unit for p in PROCESSES.values() for st in p.steps for f in st.fields if f.unit}
# Said elsewhere in the record: the signature with its manifestation, the step as the event's name.
NOT_DETAILS = ("signature", "step")


def _value(key: str, value: Any, zone: str) -> str:
    """One datum of an event, for people: words for codes, units, local times to the second."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{glossary.words(k)} {_value(k, v, zone)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_item(item, zone) for item in value)
    if key.endswith("_at"):
        return glossary.moment(value, zone)
    if key in ("test", "kind", "condition", "site", "anticoagulant", "meaning", "decision", "to_side"):
        return glossary.words(value)
    return glossary.quantity(value, UNITS.get(key)) if not isinstance(value, str) else glossary.words(value)


def _item(item: Any, zone: str) -> str:
    if isinstance(item, dict) and "lot_number" in item:
        return f"{glossary.words(item.get('kind'))} lot {item['lot_number']}"
    if isinstance(item, dict) and "code" in item:
        return f"{glossary.words(item.get('kind'))} {item['code']}"
    return _value("", item, zone)


def _details(data: dict[str, Any], zone: str) -> list[tuple[str, str]]:
    """An event's data as labelled values; a step's values are listed with the rest."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in NOT_DETAILS:
            continue
        if key == "values" and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    unit = flat.pop("unit", None)  # a QC result's: said with its value and limit
    said = []
    for key, value in flat.items():
        if key == "limit":
            said.append((glossary.label(key), glossary.limit(value, unit)))
        elif key == "value":
            said.append((glossary.label(key), glossary.quantity(value, unit)))
        elif key == "scanned_din" and isinstance(value, str):
            said.append((glossary.label(key), " ".join(glossary.din_parts(value)).strip()))
        else:
            said.append((glossary.label(key), _value(key, value, zone)))
    return said


def _correction_note(seq: int, correction: Any, zone: str) -> str:
    changes = correction.data["changes"]
    said = ", ".join(
        f"{glossary.words(k)} was {_value(k, c['old'], zone)}, now {_value(k, c['new'], zone)}"
        for k, c in changes.items()
    )
    return f"Corrected by entry {seq}: {said}; reason: {correction.data['reason']}"


def _signature_text(signature: dict[str, Any], zone: str) -> str:
    return (
        f"{signature['printed_name']} ({signature['username']}), {glossary.moment(signature['signed_at'], zone)}, "
        f"meaning: {glossary.words(signature['meaning'])}"
    )


def record_view(session: Session, actor: Actor, din: str, *, zone: str) -> RecordView:
    """The batch record as QA reviews it, for the page and the PDF: labels, units, local times to the
    second with the zone named, every signature's manifestation, corrections beside the originals."""
    batch = batches.get(session, actor, din)
    require(actor, Action.READ_RECORD, batch.clinic_id, what="batch")
    stream = batches.events(session, batch)
    corrections = {e.seq: e for e in stream if e.type == "correction"}
    events, custody, signatures, sign_off = [], [], [], []
    for event in stream:
        notes = [_correction_note(seq, corrections[seq], zone) for seq in event.corrected_by]
        who = f"{event.actor.full_name} ({event.actor.username})"
        details = _details(event.data, zone)
        events.append(
            {
                "seq": event.seq,
                "type": glossary.label(event.type),
                "occurred_at": glossary.moment(event.occurred_at, zone),
                "recorded_at": glossary.moment(event.recorded_at, zone),
                "actor": who,
                "details": details,
                "corrections": notes,
            }
        )
        if event.type in ("harvest", "handoff", "receipt"):
            custody.append(
                {
                    "seq": event.seq,
                    "type": glossary.label(event.type),
                    "occurred_at": glossary.moment(event.occurred_at, zone),
                    "actor": who,
                    "details": [
                        d
                        for d in details
                        if d[0] in ("Seal id", "Temperature", "Container condition", "Recipient", "to")
                    ],
                }
            )
        if "signature" in event.data:
            signed = event.data["signature"]
            signatures.append(
                signed | {"seq": event.seq, "text": _signature_text(signed, zone), "what": glossary.words(event.type)}
            )
            if event.type in ("released", "rejected"):
                sign_off.append((f"{glossary.label(event.type)} by", _signature_text(signed, zone)))
    qc_rows = [
        {
            "test": glossary.words(r.test),
            "value": glossary.quantity(r.value["v"], r.unit)
            + (
                f" (corrected; originally {glossary.quantity(r.original_value['v'], r.unit)})"
                if r.corrected and r.original_value
                else ""
            ),
            "spec": glossary.limit(r.limit, r.unit),
            "within": "within" if r.within_spec else "OUT of specification",
            "ok": r.within_spec,
            "entered": f"{r.entered_by.full_name} ({r.entered_by.username}), {glossary.moment(r.entered_at, zone)}",
            "verified": f"{r.verified_by.full_name} ({r.verified_by.username}), {glossary.moment(r.verified_at, zone)}"
            if r.verified_by and r.verified_at
            else "not verified",
        }
        for r in qc.results(session, batch)
    ]
    deviation_rows = [
        {
            "id": d.id,
            "kind": glossary.words(d.kind),
            "description": glossary.sentence(d.description),
            "status": glossary.words(d.status),
            "disposition": (
                f"{glossary.words(d.decision)}: {d.justification} — {_signature_text(d.signature, zone)}"
                if d.closed_by and d.closed_at and d.signature
                else "—"
            ),
        }
        for d in deviations.for_batch(session, batch.id)
    ]
    report = chains.verify(session, None, batch.din)
    verification = (
        f"Chain verified: {report.events_checked} events, head entry {batch.seq}, hash {batch.head_hash}."
        if report.ok
        else "CHAIN VERIFICATION FAILED: " + "; ".join(f"entry {f['seq']}: {f['reason']}" for f in report.failures)
    )
    latest = checkpoints.latest(session)
    checkpoint_rows = (
        [
            ("Created", glossary.moment(latest.created_at, zone)),
            ("Tree size", f"{latest.tree_size} events"),
            ("Root", latest.root),
            ("Signature (Ed25519)", latest.signature),
            ("Key id", latest.key_id),
        ]
        if latest
        else [("Checkpoint", "none yet")]
    )
    return RecordView(
        din=batch.din,
        din_display=Din(batch.din).display,
        facts=_facts(batch, zone),
        events=events,
        qc=qc_rows,
        custody=custody,
        deviations=deviation_rows,
        signatures=signatures,
        verification=verification,
        checkpoint=checkpoint_rows,
        generated=f"{glossary.moment(utcnow(), zone)} by {actor.full_name} ({actor.username})",
        stages=stepper.stages(Status(batch.status), tuple(batch.steps_done or ()), batch.released_at),
        sign_off=sign_off,
        temperatures=temperatures.leg_views(session, batch),
    )


def _facts(batch: Batch, zone: str) -> list[tuple[str, str]]:
    patient = batch.patient
    return [
        ("Product", f"{batch.product} from {TISSUE_WORDS[batch.tissue_source]}"),
        ("Patient", f"{patient.family_name}, {patient.given_name} — MRN {patient.mrn}, born {patient.birth_date}"),
        ("Clinic", f"{batch.clinic.code} {batch.clinic.name}"),
        ("Status", glossary.words(batch.status) + (" (on hold)" if batch.held else "")),
        ("Specification", f"{TISSUE_WORDS[batch.tissue_source]}, version {batch.specification.version}"),
        ("Registered", glossary.moment(batch.registered_at, zone)),
        ("Expires", glossary.moment(batch.expires_at, zone)),
        (
            "Released",
            glossary.moment(batch.released_at, zone)
            + (" — CONDITIONAL RELEASE, STERILITY PENDING" if batch.conditional_release else ""),
        ),
        ("Custodian", f"{batch.custodian.full_name} ({batch.custodian.username})" if batch.custodian else "—"),
    ]
