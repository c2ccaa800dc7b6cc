"""Views for the printed documents: labels (each print an event) and the batch record (SPEC §8)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from labtrack.audit import chains, checkpoints
from labtrack.clock import utcnow
from labtrack.documents.labels import LabelView
from labtrack.documents.record import RecordView
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import check_label
from labtrack.domain.din import Din
from labtrack.domain.hashing import iso_utc
from labtrack.domain.lifecycle import Status
from labtrack.domain.specifications import transport_range
from labtrack.models import Batch
from labtrack.services import batches, deviations, qc
from labtrack.services.streams import append_batch_event

TISSUE_WORDS = {"adipose": "Adipose lipoaspirate", "bone_marrow": "Bone marrow aspirate"}


def _local(moment: Any, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def print_label(session: Session, actor: Actor, din: str, *, kind: str, facility: str, zone: str) -> LabelView:
    """A product label only for a released batch; a collection label until then. Each print is an event."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.PRINT_LABEL, batch.clinic_id, what="batch")
    check_label(Status(batch.status), kind)
    append_batch_event(session, batch, actor, "label_printed", {"kind": kind})
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


def _words(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_words(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_words(item) for item in value)
    return "—" if value is None else str(value)


def _summary(data: dict[str, Any]) -> str:
    """An event's data in words; signatures print separately with their manifestation."""
    return "; ".join(f"{key}: {_words(value)}" for key, value in data.items() if key != "signature")


def record_view(session: Session, actor: Actor, din: str, *, zone: str) -> RecordView:
    batch = batches.get(session, actor, din)
    require(actor, Action.READ_RECORD, batch.clinic_id, what="batch")
    stream = batches.events(session, batch)
    corrections = {e.seq: e for e in stream if e.type == "correction"}
    events, custody, signatures = [], [], []
    for event in stream:
        summary = _summary(event.data)
        for seq in event.corrected_by:
            changes = corrections[seq].data["changes"]
            originals = ", ".join(f"{k} was {c['old']}, now {c['new']}" for k, c in changes.items())
            summary += f" [CORRECTED by seq {seq}: {originals}; reason: {corrections[seq].data['reason']}]"
        who = f"{event.actor.full_name} ({event.actor.username})"
        events.append(
            {
                "seq": event.seq,
                "type": event.type,
                "occurred_at": iso_utc(event.occurred_at),
                "recorded_at": iso_utc(event.recorded_at),
                "actor": who,
                "summary": summary,
            }
        )
        if event.type in ("harvest", "handoff", "receipt"):
            custody.append(
                {
                    "seq": event.seq,
                    "type": event.type,
                    "occurred_at": iso_utc(event.occurred_at),
                    "actor": who,
                    "details": _summary({k: v for k, v in event.data.items() if k != "values"}),
                }
            )
        if "signature" in event.data:
            signatures.append(event.data["signature"] | {"seq": event.seq})
    qc_rows = [
        {
            "test": r.test,
            "value": f"{r.value['v']} {r.unit or ''}".strip()
            + (f" (corrected; original {r.original_value['v']})" if r.corrected and r.original_value else ""),
            "spec": r.limit,
            "within": "yes" if r.within_spec else "NO",
            "entered": f"{r.entered_by.full_name} ({r.entered_by.username})",
            "verified": f"{r.verified_by.full_name} ({r.verified_by.username}) {iso_utc(r.verified_at)} verified"
            if r.verified_by and r.verified_at
            else "not verified",
        }
        for r in qc.results(session, batch)
    ]
    deviation_rows = [
        {
            "id": d.id,
            "kind": d.kind,
            "description": d.description,
            "status": d.status,
            "disposition": (
                f"{d.decision}: {d.justification} — {d.closed_by.full_name} ({d.closed_by.username}) "
                f"{iso_utc(d.closed_at)} meaning {d.signature['meaning']}"
                if d.closed_by and d.closed_at and d.signature
                else "—"
            ),
        }
        for d in deviations.for_batch(session, batch.id)
    ]
    report = chains.verify(session, None, batch.din)
    verification = (
        f"Chain verified: {report.events_checked} events, head seq {batch.seq}, hash {batch.head_hash}."
        if report.ok
        else "CHAIN VERIFICATION FAILED: " + "; ".join(f"seq {f['seq']}: {f['reason']}" for f in report.failures)
    )
    latest = checkpoints.latest(session)
    checkpoint_rows = (
        [
            ("Created", iso_utc(latest.created_at)),
            ("Tree size", str(latest.tree_size)),
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
        generated=f"{iso_utc(utcnow())} by {actor.full_name} ({actor.username})",
    )


def _facts(batch: Batch, zone: str) -> list[tuple[str, str]]:
    patient = batch.patient
    return [
        ("Product", f"{batch.product} from {TISSUE_WORDS[batch.tissue_source]}"),
        ("Patient", f"{patient.family_name}, {patient.given_name} — MRN {patient.mrn}, born {patient.birth_date}"),
        ("Clinic", f"{batch.clinic.code} {batch.clinic.name}"),
        ("Status", batch.status + (" (held)" if batch.held else "")),
        ("Specification", f"{batch.tissue_source} version {batch.specification.version}"),
        ("Registered", _local(batch.registered_at, zone)),
        ("Expires", _local(batch.expires_at, zone)),
        (
            "Released",
            _local(batch.released_at, zone)
            + (" — CONDITIONAL RELEASE, STERILITY PENDING" if batch.conditional_release else ""),
        ),
        ("Custodian", f"{batch.custodian.full_name} ({batch.custodian.username})" if batch.custodian else "—"),
    ]
