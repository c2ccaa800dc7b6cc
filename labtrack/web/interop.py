"""The pages' side of interoperability: logger uploads and label printing on the batch card, CSV downloads.

The card's partials (``batch/_temperatures.html``, ``batch/_label_printer.html``) read what
they show through the template globals below; their forms post to the card, whose
``ACTIONS`` call ``upload_temperatures`` and ``send_label``, the same services as the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from zoneinfo import available_timezones

from flask import Response, current_app, flash, redirect, request
from marshmallow import Schema
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import NotFound as PageNotFound

from labtrack.api.exports import QcQueryArgsSchema, csv_download
from labtrack.api.investigation_schemas import AdverseReactionQueryArgsSchema
from labtrack.api.schemas import BatchQueryArgsSchema, DeviationQueryArgsSchema
from labtrack.db import database, read_session
from labtrack.domain.actors import Action, Actor, can
from labtrack.domain.errors import DomainError, ValidationFailed
from labtrack.domain.operations import UNFINISHED_PRINT, LabelPrintStatus
from labtrack.extensions import send_label_print
from labtrack.models import Batch, LabelPrint
from labtrack.services import batches, exports, labels, temperatures
from labtrack.web import bp
from labtrack.web.auth import actor
from labtrack.web.forms import load_form

PRINT_WAIT_S = 10.0
ZONES = sorted(available_timezones())


class PrintFailed(DomainError):
    status, code, title = 502, "printer_failed", "The printer did not take the label"


@bp.app_template_global("temperature_legs")
def temperature_legs(batch: Batch) -> list[temperatures.LegView]:
    """The card's legs; the record has its own (``RecordView.temperatures``)."""
    return temperatures.leg_views(read_session(), batch)


@bp.app_template_global("can_import_temperatures")
def can_import_temperatures(batch: Batch) -> bool:
    return can(actor(), Action.CUSTODY, batch.clinic_id)


@bp.app_template_global("label_printer")
def label_printer() -> str | None:
    return current_app.config.get("LABTRACK_LABEL_PRINTER")


@bp.app_template_global("print_jobs")
def print_jobs(batch: Batch) -> list[LabelPrint]:
    return labels.recent_jobs(read_session(), batch.id)


@bp.app_template_global("time_zones")
def time_zones() -> list[str]:
    return ZONES


def upload_temperatures(who: Actor, din: str, form: MultiDict) -> str | Response:
    """The card's logger upload: the API's import, its refusal shown beside the file field."""
    leg, file = form.get("leg", ""), request.files.get("file")
    if not leg.isdigit():
        raise ValidationFailed({"leg": ["choose the leg the logger rode on"]})
    if file is None or not file.filename:
        raise ValidationFailed({"file": ["choose the logger's CSV file"]})
    upload = temperatures.upload_of(file, form.get("timezone", ""))
    allowed = float(current_app.config["LABTRACK_EXCURSION_MINUTES"])
    log = database().write(lambda s: temperatures.import_log(s, who, din, int(leg), upload, allowed_minutes=allowed))
    summary = (
        f"Logger file {log.filename} imported for leg {log.leg}: {log.min_c:g} to {log.max_c:g} °C, "
        f"mean {log.mean_c:g} °C, {log.minutes_out_of_range:g} min outside {log.low_c:g}–{log.high_c:g} °C."
    )
    if not log.excursion:
        return summary
    flash(summary + " A temperature excursion deviation was opened: the batch is held until QA closes it.", "error")
    return redirect(request.path, 303)


def send_label(who: Actor, din: str, form: MultiDict) -> str | Response:
    """Queue the label for the printer and wait a moment for the worker's answer, so the page can tell."""
    settings = labels.LabelSettings.of(current_app.config)
    send = send_label_print(current_app)
    job = database().write(
        lambda s: labels.request_print(s, who, din, kind=form.get("kind", ""), settings=settings, send=send)
    )
    deadline = time.monotonic() + PRINT_WAIT_S
    status, error = job.status, None
    while status in UNFINISHED_PRINT and time.monotonic() < deadline:
        time.sleep(0.25)
        status, error = _job_state(job.id)
    if status == LabelPrintStatus.FAILED:
        raise PrintFailed(f"The label was not printed: {error}. Check the printer and send it again.")
    if status == LabelPrintStatus.PRINTED:
        return f"The {job.kind} label was sent to the printer at {job.printer} and recorded."
    flash(
        f"The {job.kind} label is waiting for a worker to send it to {job.printer}; its outcome shows below.", "warning"
    )
    return redirect(request.path, 303)


def _job_state(job_id: int) -> tuple[str, str | None]:
    session = database().reader()
    try:
        job = session.get(LabelPrint, job_id)
        return (job.status, job.error) if job else (LabelPrintStatus.FAILED.value, "the job is gone")
    finally:
        session.close()


Export = Callable[[Session, Actor, dict], Iterator[str]]
EXPORTS: dict[str, tuple[type[Schema], Export]] = {
    "batches": (
        BatchQueryArgsSchema,
        lambda s, who, args: exports.batches_csv(s, who, batches.filter_of(who, args)),
    ),
    "deviations": (DeviationQueryArgsSchema, lambda s, who, args: exports.deviations_csv(s, who, **args)),
    "qc-results": (QcQueryArgsSchema, lambda s, who, args: exports.qc_csv(s, who, exports.QcFilter(**args))),
    "adverse-reactions": (
        AdverseReactionQueryArgsSchema,
        lambda s, who, args: exports.adverse_reactions_csv(s, who, **args),
    ),
}
PAGING = ("format", "limit", "after")


@bp.get("/exports/<name>.csv")
def export_csv(name: str):
    """A list as CSV, with the list page's filters (its query string), for the signed-in user."""
    if name not in EXPORTS:
        raise PageNotFound()
    schema, export = EXPORTS[name]
    args = {k: v for k, v in load_form(schema(), dict(request.args)).items() if k not in PAGING}
    who = actor()
    return csv_download(lambda s: export(s, who, args), name)
