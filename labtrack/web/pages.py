"""The bench scan page, notifications, audit verification, and the words pages print."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from labtrack.api.common import database, read_session
from labtrack.audit import chains
from labtrack.clock import utcnow
from labtrack.domain.actors import Role
from labtrack.domain.din import Din, parse_din
from labtrack.domain.errors import DomainError
from labtrack.domain.hashing import iso_utc
from labtrack.services import batches, notifications
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import NO_FAILURE, Failure, number, respond, zone

LABELS = {
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
    "tnc_total": "Total nucleated cells",
    "viability_pct": "Viability",
    "cd34_pct": "CD34+",
    "endotoxin_eu_per_ml": "Endotoxin",
    "sterility_culture": "Sterility culture",
    "gram_stain": "Gram stain",
    "site": "Site",
    "anticoagulant": "Anticoagulant",
    "physician": "Physician",
}


@bp.app_template_filter("words")
def words(value: Any) -> str:
    """``awaiting_release`` as "awaiting release"; known field names by their label."""
    text = str(value)
    return LABELS.get(text, text.replace("_", " "))


@bp.app_template_filter("local")
def local(moment: datetime | None) -> str:
    """A time in the lab's display zone (storage is UTC)."""
    return moment.astimezone(zone()).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


@bp.app_template_filter("utc")
def utc(moment: datetime | None) -> str:
    """A time in UTC to the second, for people (signatures show UTC, R-SIG-2)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


@bp.app_template_filter("iso")
def iso(moment: datetime | None) -> str:
    """A time for the page's script (ISO 8601, UTC)."""
    return iso_utc(moment) if moment else ""


@bp.app_template_filter("blocker")
def blocker(found: dict[str, str]) -> str:
    """A blocker's sentence, with the test it names in words (``qc_missing:tnc_total``)."""
    _kind, _, subject = found["code"].partition(":")
    return found["detail"].replace(subject, words(subject)) if subject in LABELS else found["detail"]


@bp.app_template_filter("countdown")
def countdown(moment: datetime | None) -> str:
    """Time left until ``moment``, as the page's script keeps counting it."""
    if moment is None:
        return "—"
    minutes = int((moment - utcnow()).total_seconds() // 60)
    if minutes < 0:
        return "expired"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest:02d} min left" if hours else f"{rest} min left"


@bp.app_template_filter("din_display")
def din_display(din: str) -> str:
    return Din(din).display


@bp.app_template_global("initials")
def initials(given_name: str, family_name: str) -> str:
    """On the bench, the patient by initials: enough to notice a mix-up, no more."""
    return f"{given_name[:1]}. {family_name[:1]}.".upper()


@bp.app_template_global("zone_name")
def zone_name() -> str:
    return current_app.config["LABTRACK_TIMEZONE"]


@bp.app_template_filter("zip_words")
def zip_words(values: Any) -> list[tuple[str, str]]:
    """Choices for a select: each value with its words."""
    return [(str(v), words(v)) for v in values]


@bp.app_template_filter("lot_options")
def lot_options(lots: Any) -> list[tuple[int, str]]:
    return [(lot.id, f"{lot.lot_number} — {lot.name}, expires {lot.expires_on}") for lot in lots]


@bp.app_template_filter("equipment_options")
def equipment_options(items: Any) -> list[tuple[str, str]]:
    return [(i.code, f"{i.code} — {i.name}, calibrated until {i.calibration_due_on}") for i in items]


@bp.app_template_filter("user_options")
def user_options(users: Any) -> list[tuple[str, str]]:
    return [(u.username, f"{u.full_name} ({u.username}, {u.clinic.code if u.clinic else u.role})") for u in users]


@bp.app_template_filter("clinic_options")
def clinic_options(clinics: Any) -> list[tuple[str, str]]:
    return [(c.code, f"{c.code} — {c.name}") for c in clinics]


@bp.app_template_global("at_path")
def at_path(body: dict[str, Any], path: str) -> Any:
    """A value in a nested document by its dotted path, e.g. ``tests.viability_pct.min``."""
    for name in path.split("."):
        body = body.get(name, {}) if isinstance(body, dict) else {}
    return "" if body == {} else body


@bp.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico on every page, signed in or not."""
    return bp.send_static_file("favicon.ico")


@bp.get("/bench")
@roles(Role.TECHNICIAN, Role.QA)
def bench():
    """The scan box: any R-DIN-3 form a scanner types, then Enter, opens the batch card."""
    failure = NO_FAILURE
    raw = request.args.get("din")
    if raw is not None:
        try:
            din = parse_din(raw)
            batches.get(read_session(), actor(), din.value)
        except DomainError as error:
            failure = Failure.of(error, "scan", field="din")
        else:
            return redirect(url_for("web.card", din=din.value))
    recent, _total = batches.search(read_session(), actor(), batches.BatchFilter(per_page=20))
    return render_template("bench.html", failure=failure, recent=recent), failure.status


@bp.route("/notifications", methods=["GET", "POST"])
def notifications_page():
    """The user's own notifications, newest first."""
    who = actor()

    def mark_read(form: MultiDict) -> str:
        ident = number(form.get("notification_id", ""))
        database().write(lambda s: notifications.mark_read(s, who, ident if isinstance(ident, int) else 0))
        return "Marked as read."

    return respond(
        {"read": mark_read},
        lambda failure: render_template(
            "notifications.html", items=notifications.for_user(read_session(), who), failure=failure
        ),
    )


@bp.get("/audit")
@roles(Role.QA, Role.ADMIN)
def audit():
    """Recompute the hash chains (all, or one DIN's) against the latest signed checkpoint (R-AUD-3)."""
    failure, report = NO_FAILURE, None
    if "run" in request.args:
        din = request.args.get("din", "").strip() or None
        try:
            report = chains.verify(read_session(), actor(), din).as_dict()
        except DomainError as error:
            failure = Failure.of(error, "audit", field="din")
    return render_template("audit.html", report=report, failure=failure), failure.status
