"""Words for people: every code LabTrack stores or answers with, said the way its users say it.

The API keeps its codes (clients act on them); pages, PDFs, notifications and e-mails
print ``words(code)``. One table, so a status reads the same on the bench card, in the
batch record and in the clinic's e-mail. Also here: numbers with their units and a
sensible precision (``quantity``, ``limit``: ``labtrack.domain.quantities`` with word results in
words), DINs shown one way (``din_parts``), and the validation messages of the input schemas as
sentences (``sentence``).

Plain Python: no Flask, no database, usable by the documents and the workers too.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from labtrack.domain import quantities
from labtrack.domain.din import Din, parse_din
from labtrack.domain.errors import DomainError
from labtrack.domain.followup import BASELINE
from labtrack.domain.spc import RULE_WORDS, TITLES, Metric, Rule

WORDS: dict[str, str] = {
    # batch statuses
    "registered": "registered",
    "collected": "collected",
    "in_transit": "in transit",
    "received": "received",
    "processing": "processing",
    "processed": "processed",
    "awaiting_release": "awaiting release",
    "released": "released",
    "dispatched": "dispatched",
    "delivered": "delivered",
    "administered": "administered",
    "rejected": "rejected",
    "expired": "expired",
    "discarded": "discarded",
    "not_administered": "not administered yet",
    "reviewed": "reviewed",
    # tissue sources, products
    "adipose": "adipose tissue",
    "bone_marrow": "bone marrow",
    # steps (event types too)
    "harvest": "harvest",
    "digestion": "digestion",
    "isolation": "isolation",
    "separation": "separation",
    "concentration": "concentration",
    "administration": "administration",
    "handoff": "hand-off",
    "receipt": "receipt",
    "qc": "QC testing",
    "release": "release",
    # other event types
    "qc_recorded": "QC result recorded",
    "qc_verified": "QC result verified",
    "deviation_opened": "deviation opened",
    "deviation_disposed": "deviation closed",
    "identity_mismatch": "identity mismatch (refused scan)",
    "label_printed": "label printed",
    "correction": "correction",
    "signature_failed": "failed signature attempt",
    "specification_proposed": "specification change proposed",
    "specification_approved": "specification change approved",
    "specification_withdrawn": "specification proposal withdrawn",
    "password_changed": "password changed",
    "proposed": "proposed, awaiting approval",
    "withdrawn": "withdrawn",
    "released_conditionally": "released conditionally",
    # step data fields
    "patient_mrn": "Patient MRN",
    "patient_birth_date": "Patient birth date",
    "weight_kg": "Patient weight",
    "volume_ml": "Volume",
    "started_at": "Started",
    "ended_at": "Ended",
    "duration_min": "Duration",
    "temperature_c": "Temperature",
    "g_force": "Centrifugal force",
    "final_volume_ml": "Final volume",
    "injection_sites": "Injection sites",
    "site": "Site",
    "anticoagulant": "Anticoagulant",
    "physician": "Physician",
    "scanned_din": "Scanned DIN",
    "seal_id": "Seal id",
    "condition": "Container condition",
    "to_username": "Recipient",
    "occurred_at": "When it happened",
    "late_entry_reason": "Reason for the late entry",
    "planned_administration_at": "Planned administration",
    "birth_date": "Birth date",
    "family_name": "Family name",
    "given_name": "Given name",
    "mrn": "MRN",
    "tissue_source": "Tissue source",
    "value": "Result",
    "method": "Method",
    "reason": "Reason",
    "description": "Description",
    "justification": "Justification",
    "decision": "Decision",
    "signature.password": "Password",
    "signature.meaning": "Meaning of the signature",
    "password": "Password",
    # other event data
    "to": "Handed to",
    "to_full_name": "Recipient",
    "from": "From",
    "handoff_seal_id": "Seal id at hand-off",
    "conditional_release": "Conditional release",
    "patient_id": "Patient number",
    "product": "Product",
    "specification_version": "Specification version",
    "event_seq": "Corrects entry",
    "changes": "Changes",
    "qc_result_id": "QC result number",
    "qc_ids": "QC results",
    "deviation_id": "Deviation number",
    "record_hash": "Record hash",
    "record_seq": "Verifies entry",
    "locked": "Account locked",
    "attempt": "Attempt",
    "check": "Check",
    "mismatched": "Did not match",
    "action": "Action",
    "expires_at": "Expires",
    "reagent_lots": "Reagent lots",
    "equipment": "Equipment",
    "test": "Test",
    "unit": "Unit",
    "limit": "Specification",
    "within_spec": "Within specification",
    # harvest sites, anticoagulants
    "abdomen": "abdomen",
    "flank": "flank",
    "thigh": "thigh",
    "buttock": "buttock",
    "posterior_iliac_crest": "posterior iliac crest",
    "anterior_iliac_crest": "anterior iliac crest",
    "sternum": "sternum",
    "other": "other",
    "heparin": "heparin",
    "acd_a": "ACD-A",
    "citrate": "citrate",
    # QC tests and their word results
    "tnc_total": "Total nucleated cells",
    "viability_pct": "Viability",
    "cd34_pct": "CD34+ cells",
    "endotoxin_eu_per_ml": "Endotoxin",
    "sterility_culture": "Sterility culture",
    "gram_stain": "Gram stain",
    "no_organisms_seen": "no organisms seen",
    "organisms_seen": "organisms seen",
    "pending": "pending (sample taken)",
    "no_growth": "no growth",
    "growth": "growth",
    "intact": "intact",
    "damaged": "damaged",
    # deviation kinds, statuses, decisions
    "manual": "reported by staff",
    "qc_out_of_spec": "QC result out of specification",
    "sterility_positive": "positive sterility culture",
    "seal_mismatch": "seal does not match",
    "damaged_container": "container damaged",
    "temperature_excursion": "temperature out of range",
    "custody_overdue": "hand-off not received in time",
    "open": "open",
    "closed": "closed",
    "accept": "accepted, use as is",
    "reject": "rejected, the batch is rejected",
    # release blockers (the part before the colon)
    "qc_missing": "QC result missing",
    "qc_unverified": "QC result not yet verified",
    "open_deviation": "open deviation",
    "not_ready": "not yet at that stage",
    "custody_not_at_lab": "not in the lab's custody",
    "segregation_of_duties": "another QA person must release: you worked on this batch",
    # roles
    "technician": "technician",
    "qa": "QA",
    "clinic": "clinic",
    "admin": "administrator",
    # signature meanings
    "verified": "verified",
    "approved": "approved",
    # reagent and equipment kinds and statuses
    "collagenase": "collagenase",
    "separation_kit": "separation kit",
    "incubator": "incubator",
    "centrifuge": "centrifuge",
    "quarantined": "quarantined",
    "in_service": "in service",
    "out_of_service": "out of service",
    "retired": "retired",
    # label kinds
    "collection": "collection",
    # error codes (problem+json ``code``)
    "bad_request": "request not understood",
    "unauthenticated": "sign-in needed",
    "invalid_credentials": "wrong username or password",
    "signature_invalid": "signature refused",
    "forbidden": "not allowed for your role",
    "not_found": "not found",
    "payload_too_large": "too much data",
    "account_locked": "account locked",
    "password_change_required": "choose a new password",
    "rate_limited": "too many attempts",
    "validation_error": "some values are not accepted",
    "invalid_din": "not a DIN",
    "reagent_not_usable": "reagent lot not usable",
    "equipment_not_usable": "equipment not usable",
    "idempotency_key_reused": "request repeated with other content",
    "invalid_transition": "not possible at this stage",
    "custody_violation": "you do not hold the product",
    "batch_held": "batch on hold",
    "release_blocked": "release blocked",
    "conflict": "conflict",
    "unavailable": "service unavailable",
    "already_imported": "this file was imported already",
    "not_checkpointed_yet": "not yet covered by a signed checkpoint; try again after the next one",
    "leg_not_covered": "the file does not cover the transport",
    "leg_open": "the transport has not ended yet",
    "logger_file_invalid": "the temperature file cannot be read",
    "not_acceptable": "format not available",
    "printer_failed": "the printer did not print",
    "printer_not_configured": "no label printer is set up",
    # notification events
    "batch.dispatched": "batch dispatched",
    "batch.expired": "batch expired",
    "batch.expiring": "batch about to expire",
    "batch.rejected": "batch rejected",
    "batch.released": "batch released",
    "batch.handed_to_you": "batch handed to you",
    "identity.mismatch": "identity mismatch",
    "sterility.positive": "positive sterility culture",
    # investigations (R-ADV, R-LBK)
    "recalled": "recalled",
    "lookback": "lookback",
    "infection": "infection",
    "allergic_reaction": "allergic reaction",
    "injection_site_reaction": "injection site reaction",
    "not_recovered": "not recovered",
    "reagent_lot": "reagent lot",
    "operator": "operator",
    "follow_up": "administered: follow the patient up",
    "adverse_reaction_reported": "adverse reaction reported",
    "adverse_reaction_closed": "adverse reaction closed",
    "adverse_reaction.reported": "adverse reaction reported",
    "adverse_reaction.due_soon": "adverse reaction report due soon",
    "adverse_reaction.overdue": "adverse reaction report overdue",
    "lookback.opened": "lookback opened",
    "lookback.reminder": "lookback awaiting acknowledgement",
    "lookback.unanswered": "lookback unanswered",
    "lookback.auto_opened": "lookback opened automatically",
    # follow-up (R-OUT): visit statuses, plans, events, notices, the visit's fields
    "due": "due",
    "done": "done",
    "missed": "missed",
    "follow_up_recorded": "follow-up visit recorded",
    "follow_up_missed": "follow-up visit missed",
    "follow_up_plan_proposed": "follow-up plan change proposed",
    "follow_up_plan_approved": "follow-up plan change approved",
    "follow_up.due": "follow-up visit due soon",
    "follow_up.missed": "follow-up visit missed",
    "photo_attached": "photo attached",
    "hair_density_per_cm2": "Hair density",
    "hair_shaft_diameter_um": "Hair shaft diameter",
    "patient_global_assessment": "Patient's global assessment",
    "investigator_global_assessment": "Investigator's global assessment",
    "adverse_reaction": "Adverse reaction since the last visit",
    "measured_on": "Measured on",
    "late_reason": "Reason for the late entry",
    "photo_ids": "Photos",
    "baseline_window_days": "Baseline window (days)",
    "window_days": "Window (days)",
    # the outcomes report's columns and series
    "baseline_per_cm2": "Baseline hair density",
    "density_per_cm2": "Hair density",
    "change_per_cm2": "Change from baseline (hairs/cm²)",
    "change_pct": "Change from baseline (%)",
    "viable_cells": "Viable cells",
    "dose_response": "viable-cell dose against the 6-month change",
    "ci_low": "lower 95 % confidence limit",
    "ci_high": "upper 95 % confidence limit",
    # quality trends (R-SPC): charts, limits, alerts (metrics and Nelson rules below, from the domain)
    "individuals": "individual values",
    "moving_range": "moving range",
    "mr_ucl": "upper limit of the moving range",
    "ucl": "upper control limit",
    "lcl": "lower control limit",
    "centre": "centre line",
    "trend.flag": "quality trend alert",
    "trend_baseline_reset": "trend baseline reset",
}
WORDS |= {metric.value: TITLES[metric] for metric in Metric} | {
    rule.value: f"Nelson rule {rule.value[-1]}: {RULE_WORDS[rule]}" for rule in Rule
}

# Global assessments of a follow-up visit (−3…3), as the clinic's form and the record say them.
ASSESSMENTS: dict[int, str] = {
    3: "much better", 2: "better", 1: "slightly better", 0: "no change",
    -1: "slightly worse", -2: "worse", -3: "much worse",
}  # fmt: skip


def assessment(value: int) -> str:
    """A global assessment with its sign and words: 2 → "+2 better", −1 → "−1 slightly worse"."""
    sign = "+" if value > 0 else "−" if value < 0 else ""
    return f"{sign}{abs(value)} {ASSESSMENTS[value]}"


def visit_words(name: str) -> str:
    """A follow-up visit's name: ``baseline`` → "Baseline (before the harvest)", ``m6`` → "6-month visit"."""
    if name == BASELINE:
        return "Baseline (before the harvest)"
    return f"{name[1:]}-month visit" if name[:1] == "m" and name[1:].isdigit() else words(name)


# Actions a role may take (``Action`` values), as a person says them.
ACTIONS: dict[str, str] = {
    "manage_reference": "manage users, clinics, lots, equipment and specifications",
    "read_materials": "see reagent lots and equipment",
    "read_patients": "see patients",
    "register_patient": "register patients",
    "register_batch": "order batches",
    "read_batch": "see batches",
    "log_clinic_step": "record harvests and administrations",
    "log_lab_step": "record lab steps",
    "custody": "hand off or receive products",
    "open_deviation": "open deviations",
    "list_deviations": "see deviations",
    "qc_entry": "enter QC results",
    "qc_verify": "verify QC results",
    "disposition": "decide on deviations",
    "release": "release or reject batches",
    "correct": "correct records",
    "print_label": "print labels",
    "read_record": "read batch records",
    "audit": "verify the audit trail",
    "propose_specification": "propose specification changes",
    "approve_specification": "approve specification changes",
    "record_follow_up": "record follow-up visits",
    "read_outcomes": "see the outcomes report",
    "read_trends": "see the quality trends",
    "reset_trend_baseline": "reset a trend's baseline",
    "approve_follow_up_plan": "approve follow-up plans",
    "report_reaction": "report adverse reactions",
    "read_investigations": "see investigations",
    "investigate": "open and close investigations",
    "acknowledge_lookback": "acknowledge lookbacks",
}

CODE = re.compile(r"^[a-z][a-z0-9]*(?:[_.][a-z0-9]+)+$")


def words(code: Any) -> str:
    """A code in words: ``awaiting_release`` → "awaiting release", ``qc_missing:viability_pct`` →
    "QC result missing: Viability". An unknown snake_case code still loses its underscores."""
    text = "" if code is None else str(code)
    if text in WORDS:
        return WORDS[text]
    head, sep, tail = text.partition(":")
    if sep and head in WORDS:
        return f"{WORDS[head]}: {words(tail)}"
    return text.replace("_", " ") if CODE.match(text) else text


def label(code: Any) -> str:
    """``words`` for a heading or a label: its first letter capital ("QC result recorded")."""
    said = words(code)
    return said[:1].upper() + said[1:]


def is_code(text: str) -> bool:
    """Whether ``text`` is a code of the glossary people should never read as it is (it has words of its own).

    Other snake_case text (a username such as ``clinic_b``) is not a code."""
    head = text.partition(":")[0]
    return (text in WORDS or head in WORDS) and bool(CODE.match(head)) and words(text) != text


# Numbers as a machine prints them: 36000000.0, 1e+07.
MACHINE_NUMBERS = re.compile(r"\b\d+\.0\b(?!\.)|\b\d(?:\.\d+)?e[+-]\d+\b", re.IGNORECASE)


def codes_in(text: str) -> list[str]:
    """The codes (and machine-printed numbers) in a text meant for people: what should have been words."""
    tokens = {token.strip(".:") for token in re.findall(r"[A-Za-z0-9_.+-]+", text)}
    return sorted(code for code in tokens if is_code(code)) + MACHINE_NUMBERS.findall(text)


def quantity(value: Any, unit: str | None = None) -> str:
    """``quantities.quantity`` for people: a word result in words ("no growth")."""
    return quantities.quantity(value, unit) if quantities.is_number(value) else words(value)


def limit(text: str | None, unit: str | None = None) -> str:
    """A specification limit as stored ("≥ 1e+07", "final result no_growth") in words and units."""
    out = quantities.limit(text, unit)
    return " ".join(words(part) if CODE.match(part) else part for part in out.split(" "))


def din_parts(din: str) -> tuple[str, str]:
    """A DIN as people read it: the spaced body and the check character (boxed by pages and PDFs)."""
    try:
        parsed = parse_din(din)
    except DomainError:
        return din, ""
    display = Din(parsed.value).display
    return display[:-2], display[-1]


# marshmallow's and the rules' messages as sentences: (pattern, replacement) applied in order.
MESSAGES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^Missing data for required field\.?$"), "This is required."),
    (re.compile(r"^Field may not be null\.?$"), "This is required."),
    (re.compile(r"^Not a valid number\.?$"), "Enter a number."),
    (re.compile(r"^Not a valid integer\.?$"), "Enter a whole number."),
    (re.compile(r"^Not a valid date\.?$"), "Enter a date."),
    (re.compile(r"^Not a valid datetime\.?$"), "Enter a date and time."),
    (re.compile(r"^Not a valid string\.?$"), "Enter text."),
    (re.compile(r"^Unknown field\.?$"), "This field is not part of the form."),
    (re.compile(r"^Shorter than minimum length 1\.?$"), "This is required."),
    (re.compile(r"^must be one of: (.*)$"), "Choose one of: {list}."),
    (re.compile(r"^The (\w+) role may not (.+)\.$"), "{role} may not {action}."),
)


def sentence(message: str) -> str:
    """A validation or refusal message as a person understands it; codes inside it in words."""
    text = message.strip()
    for pattern, replacement in MESSAGES:
        match = pattern.match(text)
        if not match:
            continue
        if "{list}" in replacement:
            return replacement.format(list=", ".join(words(v.strip()) for v in match[1].split(",")))
        if "{role}" in replacement:
            role = words(match[1])
            action = ACTIONS.get(match[2].replace(" ", "_"), match[2])
            who = "QA" if role == "QA" else f"The {role} role"
            return replacement.format(role=who, action=action) + " Ask someone whose role allows it."
        return replacement
    said = " ".join(_part_in_words(part) for part in text.split(" "))
    return said[:1].upper() + said[1:]


def _part_in_words(part: str) -> str:
    core = part.strip(".,;:()'\"")
    return part.replace(core, words(core)) if core and is_code(core) else part


def moment(when: Any, zone: str) -> str:
    """A time to the second in the lab's zone, the zone named: "2026-12-02 16:58:03 CET (Europe/Berlin)".

    Accepts a datetime or an ISO 8601 text (as stored in event data); other text is returned as it is."""
    if when is None or when == "":
        return "—"
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when.replace("Z", "+00:00"))
        except ValueError:
            return when
    if when.tzinfo is None:
        return when.isoformat(sep=" ")
    local = when.astimezone(ZoneInfo(zone))
    abbreviation = local.tzname() or zone
    named = "" if abbreviation == zone else f" ({zone})"
    return f"{local:%Y-%m-%d %H:%M:%S} {abbreviation}{named}"
