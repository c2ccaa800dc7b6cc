"""Printed documents: container labels and the batch record PDF (requirements §8)."""

from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from labtrack.api.common import actor, authenticate, database, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, UserSummarySchema, one_of
from labtrack.audit import keys, records
from labtrack.documents.labels import render_label
from labtrack.documents.record import render_record
from labtrack.documents.zpl import render_zpl
from labtrack.domain.decisions import LabelKind
from labtrack.extensions import send_label_print
from labtrack.services import documents, labels

blp = Blueprint(
    "documents", __name__, description="Labels (PDF, ZPL II, sent to a label printer) and batch records as PDF."
)
blp.before_request(authenticate)


class LabelQueryArgsSchema(Schema):
    kind = fields.String(load_default=LabelKind.PRODUCT.value, validate=one_of(LabelKind))


class LabelPrintCreateSchema(Schema):
    kind = fields.String(load_default=LabelKind.PRODUCT.value, validate=one_of(LabelKind))


class LabelPrintSchema(Schema):
    id = fields.Integer()
    din = fields.String()
    kind = fields.String()
    printer = fields.String(metadata={"description": "host:port the label is sent to"})
    status = fields.String(
        metadata={"description": "queued → sending → printed (the label_printed event is appended), or failed"}
    )
    requested_by = fields.Nested(UserSummarySchema)
    requested_at = UTC()
    finished_at = UTC(allow_none=True)
    error = fields.String(allow_none=True, metadata={"description": "why the printer did not take the label"})
    event_seq = fields.Integer(allow_none=True)


def _pdf(content: bytes, name: str) -> Response:
    return Response(content, mimetype="application/pdf", headers={"Content-Disposition": f'inline; filename="{name}"'})


@blp.get("/batches/<string:din>/label.pdf")
@blp.arguments(LabelQueryArgsSchema, location="query")
@blp.response(200, description="A 4 × 2 inch label (PDF).", content_type="application/pdf")
@refusals(blp, 403, 404, 409)
def label(args: dict, din: str):
    """Print a label: `product` for a released batch, `collection` before it leaves the clinic. Recorded as an event."""
    config = current_app.config
    view = database().write(
        lambda s: documents.print_label(
            s, actor(), din, kind=args["kind"], facility=config["LABTRACK_FIN"], zone=config["LABTRACK_TIMEZONE"]
        )
    )
    return _pdf(render_label(view), f"label-{view.din}-{view.kind}.pdf")


@blp.get("/batches/<string:din>/label.zpl")
@blp.arguments(LabelQueryArgsSchema, location="query")
@blp.response(200, description="The same label in ZPL II (4 × 2 in, 203 dpi).", content_type="application/zpl")
@refusals(blp, 403, 404, 409)
def label_zpl(args: dict, din: str):
    """The label for a Zebra-compatible printer, same rules and content as `label.pdf`; recorded as an event."""
    config = current_app.config
    view = database().write(
        lambda s: documents.print_label(
            s, actor(), din, kind=args["kind"], facility=config["LABTRACK_FIN"], zone=config["LABTRACK_TIMEZONE"],
            format="zpl",
        )
    )  # fmt: skip
    name = f"label-{view.din}-{view.kind}.zpl"
    return Response(
        render_zpl(view), mimetype="application/zpl", headers={"Content-Disposition": f'inline; filename="{name}"'}
    )


@blp.post("/batches/<string:din>/label/print")
@blp.arguments(LabelPrintCreateSchema)
@blp.response(202, LabelPrintSchema)
@refusals(blp, 403, 404, 409, 413)
def print_label(body: dict, din: str):
    """Send the label to the lab's printer (`LABTRACK_LABEL_PRINTER`) from a worker; poll the job for the outcome.

    The `label_printed` event is appended only once the printer took the label; 409
    `printer_not_configured` when no printer is set.
    """
    settings = labels.LabelSettings.of(current_app.config)
    send = send_label_print(current_app)
    return write(
        lambda s: labels.request_print(s, actor(), din, kind=body["kind"], settings=settings, send=send),
        LabelPrintSchema(),
        status=202,
    )


@blp.get("/batches/<string:din>/label/prints/<int:print_id>")
@blp.response(200, LabelPrintSchema)
@refusals(blp, 404, 422)
def print_job(din: str, print_id: int):
    """A print job: queued, sending, printed (with its event) or failed (with the reason)."""
    return labels.get_job(read_session(), actor(), din, print_id)


@blp.get("/batches/<string:din>/record.pdf")
@blp.response(200, description="The batch record (PDF).", content_type="application/pdf")
@refusals(blp, 403, 404, 422)
def record(din: str):
    """The whole batch record for QA and inspectors: events, QC, custody, deviations, signatures, verification."""
    view = records.record_view(
        read_session(),
        actor(),
        din,
        zone=current_app.config["LABTRACK_TIMEZONE"],
        public_key=keys.trusted_public_key(current_app.config),
    )
    return _pdf(render_record(view), f"batch-record-{view.din}.pdf")
