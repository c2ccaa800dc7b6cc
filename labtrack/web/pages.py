"""The bench scan page, notifications, audit verification, and the words pages print."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import current_app, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.datastructures import MultiDict

from labtrack import extensions, glossary
from labtrack.api.schemas import BatchQueryArgsSchema, PageArgsSchema
from labtrack.audit import chains, keys, runs
from labtrack.clock import utcnow
from labtrack.db import database, read_session
from labtrack.domain import stages
from labtrack.domain.actors import Role
from labtrack.domain.deviations import Disposition
from labtrack.domain.din import Din, parse_din
from labtrack.domain.errors import DomainError
from labtrack.domain.hashing import iso_utc
from labtrack.domain.lifecycle import ContainerCondition, Status
from labtrack.domain.operations import LabelPrintStatus, VerificationKind, VerificationStatus
from labtrack.domain.process import PROCESSES, TissueSource
from labtrack.domain.signatures import Meaning
from labtrack.services import batches, notifications, paging
from labtrack.web import bp
from labtrack.web.auth import actor, roles
from labtrack.web.forms import NO_FAILURE, Failure, given, load_form, parse_number, respond, zone

# The glossary's words, units and DIN display, for every template (R-WEB wording: codes stay in the API).
bp.app_template_filter("words")(glossary.words)
bp.app_template_filter("label")(glossary.label)
bp.app_template_filter("quantity")(glossary.quantity)
bp.app_template_filter("limit")(glossary.limit)
bp.app_template_filter("sentence")(glossary.sentence)


@bp.app_template_filter("din")
def din_html(din: str) -> Markup:
    """A DIN one way everywhere: spaced, its check character boxed."""
    body, check = glossary.din_parts(din)
    boxed = Markup('<span class="check" title="check character">%s</span>') % check if check else ""
    return Markup('<span class="din">%s %s</span>') % (body, boxed)


GOOD_NEWS = frozenset({Status.RELEASED, Status.DISPATCHED, Status.DELIVERED, Status.ADMINISTERED})
BAD_NEWS = frozenset({Status.REJECTED, Status.EXPIRED, Status.DISCARDED})


@bp.app_template_filter("tone")
def tone(status: str) -> str:
    """A status's colour class: green only for good news, red for bad, neutral for the way between."""
    if status in GOOD_NEWS:
        return "good"
    return "bad" if status in BAD_NEWS else "neutral"


@bp.app_template_filter("stepper")
def stepper(status: str, batch: Any) -> list[stages.Stage]:
    """The harvest-to-administration stepper of a batch."""
    return stages.stages(Status(status), tuple(batch.steps_done or ()), batch.released_at)


@bp.app_template_filter("product_words")
def product_words(tissue_source: str) -> str:
    """``adipose`` as "SVF (adipose tissue)": the product people name, with its source."""
    return f"{PROCESSES[TissueSource(tissue_source)].product} ({glossary.words(tissue_source)})"


@bp.app_template_filter("moment")
def moment(when: Any) -> str:
    """A time to the second in the lab's zone, with the zone named."""
    return glossary.moment(when, current_app.config["LABTRACK_TIMEZONE"])


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
    """A blocker's sentence, with the codes it names in words (``qc_missing:tnc_total``)."""
    return glossary.sentence(found["detail"])


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


# The domain's value sets a form offers or submits or a page reports, for the templates: the values are never
# typed out there.
for _enum in (ContainerCondition, Disposition, LabelPrintStatus, Meaning, TissueSource, VerificationKind,
              VerificationStatus):  # fmt: skip
    bp.add_app_template_global(_enum, _enum.__name__)


@bp.app_template_filter("zip_words")
def zip_words(values: Any) -> list[tuple[str, str]]:
    """Choices for a select: each value with its words."""
    return [(str(v), glossary.words(v)) for v in values]


@dataclass(frozen=True)
class Pickable:
    """One lot or item of equipment in a picker: chosen by its value, scanned by its code, disabled
    with the reason it cannot be used."""

    value: str
    code: str
    text: str
    reason: str | None


@bp.app_template_filter("lot_options")
def lot_options(lots: Any) -> list[Pickable]:
    return [
        Pickable(str(lot.id), lot.lot_number, f"{lot.lot_number} — {lot.name}, expires {lot.expires_on}", why)
        for lot, why in lots
    ]


@bp.app_template_filter("equipment_options")
def equipment_options(items: Any) -> list[Pickable]:
    return [
        Pickable(i.code, i.code, f"{i.code} — {i.name}, calibrated until {i.calibration_due_on}", why)
        for i, why in items
    ]


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


BENCH_FILTERS = ("status", "tissue_source", "clinic", "waiting_for_me", "patient")


@bp.get("/bench")
@roles(Role.TECHNICIAN, Role.QA)
def bench():
    """The scan box (any R-DIN-3 form a scanner types, then Enter, opens the batch card), and the
    batches, filtered (status, product, clinic, waiting for me, patient) and paged by keyset."""
    session, who = read_session(), actor()
    failure = NO_FAILURE
    raw = request.args.get("din")
    if raw is not None:
        try:
            din = parse_din(raw)
            batches.get(session, who, din.value)
        except DomainError as error:
            failure = Failure.of(error, "scan", field="din")
        else:
            return redirect(url_for("web.card", din=din.value))
    chosen = {name: request.args[name].strip() for name in BENCH_FILTERS if request.args.get(name, "").strip()}
    listed = paging.Page([], None)
    try:
        paged = given(request.args, "after", "limit")
        listed = batches.listing(session, who, load_form(BatchQueryArgsSchema(), chosen | paged))
    except DomainError as error:
        failure = Failure.of(error, "filter")
    return render_template(
        "bench.html",
        failure=failure,
        listed=listed,
        chosen=chosen,
        statuses=[s.value for s in Status],
        tissues=[t.value for t in TissueSource],
    ), failure.status


@bp.route("/notifications", methods=["GET", "POST"])
def notifications_page():
    """The user's own notifications, newest first."""
    who = actor()

    def mark_read(form: MultiDict) -> str:
        ident = parse_number(form.get("notification_id", ""))
        database().write(lambda s: notifications.mark_read(s, who, ident if isinstance(ident, int) else 0))
        return "Marked as read."

    def render(failure: Failure) -> str:
        paged = load_form(PageArgsSchema(), given(request.args, "after", "limit"))
        listed = notifications.for_user(read_session(), who, limit=paged["limit"], after=paged.get("after"))
        return render_template("notifications.html", listed=listed, failure=failure)

    return respond({"read": mark_read}, render)


@bp.route("/audit", methods=["GET", "POST"])
@roles(Role.QA, Role.ADMIN)
def audit():
    """Verify the hash chains (R-AUD-3): incrementally since the last verified checkpoint, or one DIN's whole
    chain, in the request; a full verification of every chain in the background, its progress shown (R-SCL-2)."""
    who = actor()

    def start_full(_form: MultiDict) -> str:
        run, new = database().write(lambda s: (lambda r: (r[0].id, r[1]))(runs.request_full(s, who)))
        if new:
            extensions.hand_to_worker(current_app, run)
            return f"Full verification {run} started: its progress shows below."
        return f"Full verification {run} is already under way."

    def page(report: dict | None, failure: Failure) -> str:
        latest = runs.latest_full(read_session())
        full = runs.as_dict(latest) if latest else None
        return render_template("audit.html", report=report, failure=failure, full_run=full)

    if request.method == "POST":
        return respond({"full": start_full}, lambda failure: page(None, failure))
    failure, report = NO_FAILURE, None
    if "run" in request.args:
        din = request.args.get("din", "").strip() or None
        try:
            trusted = keys.trusted_public_key(current_app.config)
            session = read_session()
            checked = (
                chains.verify_batch(session, who, din, public_key=trusted)
                if din
                else chains.verify_recent(session, who, public_key=trusted)
            )
            report = checked.as_dict()
        except DomainError as error:
            failure = Failure.of(error, "audit", field="din")
    return page(report, failure), failure.status
