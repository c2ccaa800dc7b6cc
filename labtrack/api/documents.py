"""Printed documents: container labels and the batch record PDF (SPEC §8)."""

from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from labtrack.api.common import actor, authenticate, database, read_session
from labtrack.api.errors import refusals
from labtrack.documents.labels import render_label
from labtrack.documents.record import render_record
from labtrack.domain.decisions import LABEL_KINDS
from labtrack.services import documents

blp = Blueprint("documents", __name__, description="Labels and batch records as PDF.")
blp.before_request(authenticate)


class LabelQueryArgsSchema(Schema):
    kind = fields.String(load_default="product", validate=validate.OneOf(LABEL_KINDS))


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


@blp.get("/batches/<string:din>/record.pdf")
@blp.response(200, description="The batch record (PDF).", content_type="application/pdf")
@refusals(blp, 403, 404, 422)
def record(din: str):
    """The whole batch record for QA and inspectors: events, QC, custody, deviations, signatures, verification."""
    view = documents.record_view(read_session(), actor(), din, zone=current_app.config["LABTRACK_TIMEZONE"])
    return _pdf(render_record(view), f"batch-record-{view.din}.pdf")
