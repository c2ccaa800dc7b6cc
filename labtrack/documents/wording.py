"""The words the printed documents say about a batch: rows of the batch record and label fields.

Plain functions from the batch's rows (read by attribute) to strings, so that the services
only gather what a document shows and this module alone decides how it reads: words for
codes (the glossary), units, local times to the second with the zone named.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from labtrack import glossary
from labtrack.domain.process import PROCESSES

TISSUE_WORDS = {"adipose": "Adipose lipoaspirate", "bone_marrow": "Bone marrow aspirate"}
CUSTODY_EVENTS = ("harvest", "handoff", "receipt")
CUSTODY_DETAILS = ("Seal id", "Temperature", "Container condition", "Recipient", "to")
# Units of step data, by field name, for the record's details.
UNITS = {f.name: f.unit for p in PROCESSES.values() for st in p.steps for f in st.fields if f.unit}
# Said elsewhere in the record: the signature with its manifestation, the step as the event's name.
NOT_DETAILS = ("signature", "step")
CODED = ("test", "kind", "condition", "site", "anticoagulant", "meaning", "decision", "to_side")


def local_time(moment: Any, zone: str) -> str:
    """A label's moment in the lab's time zone, to the minute, with the zone named."""
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


def person(user: Any) -> str:
    return f"{user.full_name} ({user.username})"


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
    if key in CODED:
        return glossary.words(value)
    return glossary.quantity(value, UNITS.get(key)) if not isinstance(value, str) else glossary.words(value)


def _item(item: Any, zone: str) -> str:
    if isinstance(item, dict) and "lot_number" in item:
        return f"{glossary.words(item.get('kind'))} lot {item['lot_number']}"
    if isinstance(item, dict) and "code" in item:
        return f"{glossary.words(item.get('kind'))} {item['code']}"
    return _value("", item, zone)


def details(data: dict[str, Any], zone: str) -> list[tuple[str, str]]:
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


def correction_note(seq: int, correction: Any, zone: str) -> str:
    changes = correction.data["changes"]
    said = ", ".join(
        f"{glossary.words(k)} was {_value(k, c['old'], zone)}, now {_value(k, c['new'], zone)}"
        for k, c in changes.items()
    )
    return f"Corrected by entry {seq}: {said}; reason: {correction.data['reason']}"


def signature_text(signature: dict[str, Any], zone: str) -> str:
    """A signature's manifestation (R-SIG-2): printed name, username, time, meaning."""
    return (
        f"{signature['printed_name']} ({signature['username']}), {glossary.moment(signature['signed_at'], zone)}, "
        f"meaning: {glossary.words(signature['meaning'])}"
    )


def event_rows(stream: list[Any], zone: str) -> tuple[list[dict], list[dict], list[dict], list[tuple[str, str]]]:
    """The timeline (corrections beside the originals), the custody chain, the signatures and the sign-off."""
    corrections = {e.seq: e for e in stream if e.type == "correction"}
    events: list[dict[str, Any]] = []
    custody: list[dict[str, Any]] = []
    signatures: list[dict[str, Any]] = []
    sign_off: list[tuple[str, str]] = []
    for event in stream:
        who = person(event.actor)
        said = details(event.data, zone)
        events.append(
            {
                "seq": event.seq,
                "type": glossary.label(event.type),
                "occurred_at": glossary.moment(event.occurred_at, zone),
                "recorded_at": glossary.moment(event.recorded_at, zone),
                "actor": who,
                "details": said,
                "corrections": [correction_note(seq, corrections[seq], zone) for seq in event.corrected_by],
            }
        )
        if event.type in CUSTODY_EVENTS:
            custody.append(
                {
                    "seq": event.seq,
                    "type": glossary.label(event.type),
                    "occurred_at": glossary.moment(event.occurred_at, zone),
                    "actor": who,
                    "details": [d for d in said if d[0] in CUSTODY_DETAILS],
                }
            )
        if "signature" in event.data:
            signed = event.data["signature"]
            text = signature_text(signed, zone)
            signatures.append(signed | {"seq": event.seq, "text": text, "what": glossary.words(event.type)})
            if event.type in ("released", "rejected"):
                sign_off.append((f"{glossary.label(event.type)} by", text))
    return events, custody, signatures, sign_off


def qc_row(result: Any, zone: str) -> dict[str, Any]:
    corrected = result.corrected and result.original_value
    original = (
        f" (corrected; originally {glossary.quantity(result.original_value['v'], result.unit)})" if corrected else ""
    )
    verified = result.verified_by and result.verified_at
    return {
        "test": glossary.words(result.test),
        "value": glossary.quantity(result.value["v"], result.unit) + original,
        "spec": glossary.limit(result.limit, result.unit),
        "within": "within" if result.within_spec else "OUT of specification",
        "ok": result.within_spec,
        "entered": f"{person(result.entered_by)}, {glossary.moment(result.entered_at, zone)}",
        "verified": f"{person(result.verified_by)}, {glossary.moment(result.verified_at, zone)}"
        if verified
        else "not verified",
    }


def deviation_row(deviation: Any, zone: str) -> dict[str, Any]:
    closed = deviation.closed_by and deviation.closed_at and deviation.signature
    return {
        "id": deviation.id,
        "kind": glossary.words(deviation.kind),
        "description": glossary.sentence(deviation.description),
        "status": glossary.words(deviation.status),
        "disposition": (
            f"{glossary.words(deviation.decision)}: {deviation.justification} — "
            f"{signature_text(deviation.signature, zone)}"
            if closed
            else "—"
        ),
    }


def verification_line(report: Any, batch: Any) -> str:
    """The chain verification result (``audit.chains.Report``) that closes the record."""
    if report.ok:
        return f"Chain verified: {report.events_checked} events, head entry {batch.seq}, hash {batch.head_hash}."
    return "CHAIN VERIFICATION FAILED: " + "; ".join(f"entry {f['seq']}: {f['reason']}" for f in report.failures)


def checkpoint_rows(latest: Any | None, zone: str) -> list[tuple[str, str]]:
    if latest is None:
        return [("Checkpoint", "none yet")]
    return [
        ("Created", glossary.moment(latest.created_at, zone)),
        ("Tree size", f"{latest.tree_size} events"),
        ("Root", latest.root),
        ("Signature (Ed25519)", latest.signature),
        ("Key id", latest.key_id),
    ]


def generated(moment: Any, actor: Any, zone: str) -> str:
    return f"{glossary.moment(moment, zone)} by {actor.full_name} ({actor.username})"


def facts(batch: Any, zone: str) -> list[tuple[str, str]]:
    patient = batch.patient
    released = glossary.moment(batch.released_at, zone)
    return [
        ("Product", f"{batch.product} from {TISSUE_WORDS[batch.tissue_source]}"),
        ("Patient", f"{patient.family_name}, {patient.given_name} — MRN {patient.mrn}, born {patient.birth_date}"),
        ("Clinic", f"{batch.clinic.code} {batch.clinic.name}"),
        ("Status", glossary.words(batch.status) + (" (on hold)" if batch.held else "")),
        ("Specification", f"{TISSUE_WORDS[batch.tissue_source]}, version {batch.specification.version}"),
        ("Registered", glossary.moment(batch.registered_at, zone)),
        ("Expires", glossary.moment(batch.expires_at, zone)),
        ("Released", released + (" — CONDITIONAL RELEASE, STERILITY PENDING" if batch.conditional_release else "")),
        ("Custodian", person(batch.custodian) if batch.custodian else "—"),
    ]
