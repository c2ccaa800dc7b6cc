"""The words the printed documents say about a batch: rows of the batch record and label fields.

Plain functions from the batch's rows (read by attribute) to strings, so that the services
only gather what a document shows and this module alone decides how it reads.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from labtrack.domain.hashing import iso_utc

TISSUE_WORDS = {"adipose": "Adipose lipoaspirate", "bone_marrow": "Bone marrow aspirate"}
CUSTODY_EVENTS = ("harvest", "handoff", "receipt")


def local_time(moment: Any, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def _words(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_words(item)}" for key, item in value.items())
    if isinstance(value, list):
        return "; ".join(_words(item) for item in value)
    return "—" if value is None else str(value)


def summary(data: dict[str, Any]) -> str:
    """An event's data in words; signatures print separately with their manifestation."""
    return "; ".join(f"{key}: {_words(value)}" for key, value in data.items() if key != "signature")


def person(user: Any) -> str:
    return f"{user.full_name} ({user.username})"


def event_rows(stream: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The timeline (corrections marked with the original value), the custody chain and the signatures."""
    corrections = {e.seq: e for e in stream if e.type == "correction"}
    events, custody, signatures = [], [], []
    for event in stream:
        said = summary(event.data)
        for seq in event.corrected_by:
            changes = corrections[seq].data["changes"]
            originals = ", ".join(f"{k} was {c['old']}, now {c['new']}" for k, c in changes.items())
            said += f" [CORRECTED by seq {seq}: {originals}; reason: {corrections[seq].data['reason']}]"
        who = person(event.actor)
        events.append(
            {
                "seq": event.seq,
                "type": event.type,
                "occurred_at": iso_utc(event.occurred_at),
                "recorded_at": iso_utc(event.recorded_at),
                "actor": who,
                "summary": said,
            }
        )
        if event.type in CUSTODY_EVENTS:
            custody.append(
                {
                    "seq": event.seq,
                    "type": event.type,
                    "occurred_at": iso_utc(event.occurred_at),
                    "actor": who,
                    "details": summary({k: v for k, v in event.data.items() if k != "values"}),
                }
            )
        if "signature" in event.data:
            signatures.append(event.data["signature"] | {"seq": event.seq})
    return events, custody, signatures


def qc_row(result: Any) -> dict[str, Any]:
    corrected = result.corrected and result.original_value
    original = f" (corrected; original {result.original_value['v']})" if corrected else ""
    verified = (
        f"{person(result.verified_by)} {iso_utc(result.verified_at)} verified"
        if result.verified_by and result.verified_at
        else "not verified"
    )
    return {
        "test": result.test,
        "value": f"{result.value['v']} {result.unit or ''}".strip() + original,
        "spec": result.limit,
        "within": "yes" if result.within_spec else "NO",
        "entered": person(result.entered_by),
        "verified": verified,
    }


def deviation_row(deviation: Any) -> dict[str, Any]:
    closed = deviation.closed_by and deviation.closed_at and deviation.signature
    return {
        "id": deviation.id,
        "kind": deviation.kind,
        "description": deviation.description,
        "status": deviation.status,
        "disposition": (
            f"{deviation.decision}: {deviation.justification} — {person(deviation.closed_by)} "
            f"{iso_utc(deviation.closed_at)} meaning {deviation.signature['meaning']}"
            if closed
            else "—"
        ),
    }


def verification_line(report: Any, batch: Any) -> str:
    """The chain verification result (``audit.chains.Report``) that closes the record."""
    if report.ok:
        return f"Chain verified: {report.events_checked} events, head seq {batch.seq}, hash {batch.head_hash}."
    return "CHAIN VERIFICATION FAILED: " + "; ".join(f"seq {f['seq']}: {f['reason']}" for f in report.failures)


def checkpoint_rows(latest: Any | None) -> list[tuple[str, str]]:
    if latest is None:
        return [("Checkpoint", "none yet")]
    return [
        ("Created", iso_utc(latest.created_at)),
        ("Tree size", str(latest.tree_size)),
        ("Root", latest.root),
        ("Signature (Ed25519)", latest.signature),
        ("Key id", latest.key_id),
    ]


def facts(batch: Any, zone: str) -> list[tuple[str, str]]:
    patient = batch.patient
    return [
        ("Product", f"{batch.product} from {TISSUE_WORDS[batch.tissue_source]}"),
        ("Patient", f"{patient.family_name}, {patient.given_name} — MRN {patient.mrn}, born {patient.birth_date}"),
        ("Clinic", f"{batch.clinic.code} {batch.clinic.name}"),
        ("Status", batch.status + (" (held)" if batch.held else "")),
        ("Specification", f"{batch.tissue_source} version {batch.specification.version}"),
        ("Registered", local_time(batch.registered_at, zone)),
        ("Expires", local_time(batch.expires_at, zone)),
        (
            "Released",
            local_time(batch.released_at, zone)
            + (" — CONDITIONAL RELEASE, STERILITY PENDING" if batch.conditional_release else ""),
        ),
        ("Custodian", person(batch.custodian) if batch.custodian else "—"),
    ]
