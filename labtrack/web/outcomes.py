"""Follow-up and trends pages: the clinic's follow-up list and visit form, QA's trend charts, the outcomes page.

Thin adapters like every page: forms are loaded with the API's own schemas and go to
the same services; charts are SVG images drawn on the server (``labtrack.web.charts``).
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, flash, redirect, render_template, request, url_for
from werkzeug.datastructures import MultiDict

from labtrack.api.outcome_schemas import BaselineResetSchema, FollowUpCreateSchema, OutcomesQueryArgsSchema
from labtrack.clock import utcnow
from labtrack.db import database, read_session
from labtrack.domain.actors import Action, Role, can
from labtrack.domain.din import Din
from labtrack.domain.errors import NotFound
from labtrack.domain.followup import BASELINE, MAX_PHOTOS
from labtrack.domain.photos import MAX_BYTES
from labtrack.domain.process import TissueSource
from labtrack.domain.spc import TITLES, UNITS, Metric
from labtrack.extensions import outcomes_report
from labtrack.glossary import ASSESSMENTS, assessment, visit_words
from labtrack.models import Batch
from labtrack.services import attachments, batches, followups, trends
from labtrack.web import bp, charts
from labtrack.web.auth import actor, roles
from labtrack.web.forms import aware, given, load_form, parse_number, respond

VISIT_FORM = "web.visit_form"
PHOTO_FORM_LIMIT = MAX_PHOTOS * MAX_BYTES // 2  # a visit's form: a few full-size photos and its fields
ASSESSMENT_CHOICES = [(value, assessment(value)) for value in sorted(ASSESSMENTS, reverse=True)]
SOURCES = {"adipose": "SVF from adipose tissue", "bone_marrow": "BMAC from bone marrow"}


def photo_limit() -> None:
    """The visit form carries photos: a larger body limit, set before the CSRF check reads the form."""
    if request.endpoint == VISIT_FORM:
        request.max_content_length = PHOTO_FORM_LIMIT


# Blueprint hooks run in registration order; this one must run before the sign-in hook's CSRF check.
bp.before_request_funcs.setdefault(None, []).insert(0, photo_limit)


@bp.app_template_filter("measure")
def measure(value: float | None) -> str:
    """A measured value for people: thousands grouped (280,000), small ones to four figures (0.5, 88.2)."""
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


@bp.app_template_filter("visit_words")
def _visit_words(name: str) -> str:
    return visit_words(name)


@bp.app_template_filter("assessment")
def _assessment(value: int | None) -> str:
    return "—" if value is None else assessment(int(value))


@bp.app_template_global("follow_up_panel")
def follow_up_panel(batch: Batch) -> dict[str, Any]:
    """What the batch card's follow-up panel shows: the visits, and whether this user may record them."""
    who = actor()
    return {
        "visits": followups.visits_of(read_session(), batch),
        "may_record": can(who, Action.RECORD_FOLLOW_UP, batch.clinic_id),
        "today": utcnow().date(),
    }


# --- the clinic's follow-ups (R-OUT-2) ------------------------------------------------------------


@bp.get("/clinic/follow-ups")
@roles(Role.CLINIC)
def follow_ups_page():
    """The clinic's visits: overdue first, then due within 30 days, later ones, and those done."""
    today = utcnow().date()
    return render_template(
        "outcomes/follow_ups.html", groups=followups.clinic_list(read_session(), actor(), today), today=today
    )


def _visit_body(form: MultiDict, photo_ids: list[int]) -> dict[str, Any]:
    payload: dict[str, Any] = given(form, "measured_on", "note", "late_reason")
    for name in ("hair_density_per_cm2", "hair_shaft_diameter_um"):
        if form.get(name, "").strip():
            payload[name] = parse_number(form[name])
    for name in ("patient_global_assessment", "investigator_global_assessment"):
        if form.get(name, "").strip():
            payload[name] = parse_number(form[name])
    payload["adverse_reaction"] = form.get("adverse_reaction") == "yes"
    payload["photo_ids"] = photo_ids
    return load_form(FollowUpCreateSchema(), payload)


@bp.route("/batches/<din>/follow-ups/<visit>", methods=["GET", "POST"])
@roles(Role.CLINIC)
def visit_form(din: str, visit: str):
    """Record one visit: measurements, assessments, the adverse-reaction flag and optional photos."""
    who = actor()

    def record(form: MultiDict):
        uploads = [f for f in request.files.getlist("photos") if f and f.filename]

        def work(session):
            photo_ids = [attachments.upload(session, who, din, f.read()).id for f in uploads]
            return followups.record(session, who, din, visit, **_visit_body(form, photo_ids))

        done = database().write(work)
        message = f"{visit_words(visit)} recorded for batch {Din(din).display if len(din) == 13 else din}."
        if done.measurement and done.measurement.get("adverse_reaction"):
            # R-ADV-1: the flag offers the report itself, on this batch
            flash(f"{message} You marked an adverse reaction: report it to the lab's QA here.", "success")
            return redirect(url_for("web.report_reaction", din=din), 303)
        flash(message, "success")
        return redirect(url_for("web.follow_ups_page"), 303)

    def render(failure):
        session = read_session()
        batch = batches.get(session, who, din)
        found = [v for v in followups.visits_of(session, batch) if v.visit == visit]
        if not found:
            raise NotFound(f"No visit {visit!r} is scheduled for this batch.")
        baseline = next((v for v in followups.visits_of(session, batch) if v.visit == BASELINE), None)
        return render_template(
            "outcomes/visit.html",
            batch=batch,
            din=Din(batch.din),
            visit=found[0],
            baseline=baseline,
            assessments=ASSESSMENT_CHOICES,
            today=utcnow().date(),
            failure=failure,
            max_photos=MAX_PHOTOS,
        )

    return respond({"record": record}, render)


@bp.get("/batches/<din>/photos/<int:attachment_id>")
def photo(din: str, attachment_id: int):
    """A follow-up photo, for whoever may read the batch."""
    found = attachments.get(read_session(), actor(), din, attachment_id)
    return Response(found.content, mimetype=found.content_type)


# --- QA's trends (R-SPC-1..3) ---------------------------------------------------------------------


@bp.route("/qa/trends", methods=["GET", "POST"])
@roles(Role.QA)
def trends_page():
    """Every I-MR chart, the points each rule flagged, and the signed baseline reset."""
    who = actor()

    def reset(form: MultiDict) -> str:
        body = load_form(
            BaselineResetSchema(),
            given(form, "reason")
            | {
                "starts_at": aware(form.get("starts_at", "").strip()),
                "signature": {
                    "password": form.get("signature.password", ""),
                    "meaning": form.get("signature.meaning", ""),
                },
            },
        )
        source, metric = form.get("tissue_source", ""), form.get("metric", "")
        database().write(lambda s: trends.reset_baseline(s, who, source, metric, **body))
        return f"The baseline of the {TITLES[Metric(metric)].lower()} chart ({SOURCES[source]}) was reset."

    def render(failure):
        session = read_session()
        sections = []
        for source in TissueSource:
            panels = [
                {"metric": metric, "document": document, "flagged": [p for p in document["points"] if p["flags"]]}
                for metric, document in trends.trends_of(session, who, source.value).items()
            ]
            sections.append({"source": source.value, "panels": panels})
        return render_template(
            "outcomes/trends.html",
            sections=sections,
            titles=TITLES,
            units=UNITS,
            sources=SOURCES,
            failure=failure,
        )

    return respond({"reset": reset}, render)


@bp.get("/qa/trends/<tissue_source>/<metric>.svg")
@roles(Role.QA)
def trend_chart(tissue_source: str, metric: str):
    """One I chart (``?part=mr``: its moving-range chart) as SVG."""
    document = trends.trend(read_session(), actor(), tissue_source, metric)
    return charts.svg_response(charts.individuals(document, moving_range=request.args.get("part") == "mr"))


# --- outcomes (R-OUT-5) ---------------------------------------------------------------------------


def _report_args() -> dict[str, Any]:
    args = load_form(OutcomesQueryArgsSchema(), {k: v for k, v in request.args.items() if v and k != "format"})
    args.pop("format", None)
    return args


@bp.get("/outcomes")
@roles(Role.QA, Role.CLINIC)
def outcomes_page():
    """The outcomes report with its two charts; QA sees every clinic, a clinic its own patients."""
    args = _report_args()
    report = outcomes_report(current_app, actor(), **args)
    query = {k: v for k, v in request.args.items() if v and k in ("tissue_source", "from", "to")}
    return render_template("outcomes/report.html", report=report, query=query, sources=SOURCES, args=args)


@bp.get("/outcomes/<chart>.svg")
@roles(Role.QA, Role.CLINIC)
def outcomes_chart(chart: str):
    """``change``: change from baseline per visit; ``dose-<tissue source>``: dose against the 6-month change."""
    report = outcomes_report(current_app, actor(), **_report_args())
    if chart == "change":
        return charts.svg_response(charts.change_by_visit(report))
    source = chart.removeprefix("dose-")
    if not chart.startswith("dose-") or source not in SOURCES:
        raise NotFound("No such chart.")
    return charts.svg_response(charts.dose_response(report, source))
