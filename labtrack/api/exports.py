"""CSV downloads of the lists (R-EXP-1), and the QC results list they need."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Response, stream_with_context
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from labtrack.api.common import actor, authenticate, read_session
from labtrack.api.errors import refusals
from labtrack.api.schemas import QC_TESTS, ExportArgsSchema, PageArgsSchema, QcResultSchema, Text, page_of
from labtrack.services import exports

blp = Blueprint("exports", __name__, description="QC results across batches; every list also as CSV (`format=csv`).")
blp.before_request(authenticate)
View = TypeVar("View", bound=Callable[..., Any])
CSV = "text/csv"


def also_csv(blueprint: Blueprint, schema: type[Schema] | Schema) -> Callable[[View], View]:
    """Document that the 200 answer is ``schema`` as JSON, or text/csv with ``format=csv``."""
    csv_text = {"type": "string", "description": "RFC 4180 CSV, UTF-8 with a byte-order mark, a header line"}
    return blueprint.doc(
        responses={
            "200": {
                "description": "The list as JSON, or with format=csv every matching row as CSV",
                "content": {"application/json": {"schema": schema}, CSV: {"schema": csv_text}},
            }
        }
    )


def csv_download(rows: Callable[[Session], Iterator[str]], name: str) -> Response:
    """Stream the export as it is read; the access check (and a filter naming no batch) refuses before it starts."""
    lines = rows(read_session())
    first = next(lines)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")

    def body() -> Iterator[str]:
        yield first
        yield from lines

    return Response(
        stream_with_context(body()),
        mimetype=CSV,
        headers={"Content-Disposition": f'attachment; filename="labtrack-{name}-{stamp}.csv"'},
    )


class QcQueryArgsSchema(PageArgsSchema, ExportArgsSchema):
    din = Text()
    clinic = Text()
    test = fields.String(validate=validate.OneOf(QC_TESTS))
    within_spec = fields.Boolean()
    verified = fields.Boolean()


class QcListedSchema(QcResultSchema):
    din = fields.String()


QcPageSchema = page_of(QcListedSchema, "QcResultPage")


@blp.get("/qc-results")
@blp.arguments(QcQueryArgsSchema, location="query")
@blp.response(200, QcPageSchema)
@also_csv(blp, QcPageSchema)
@refusals(blp, 403, 404)
def list_qc_results(args: dict):
    """QC results across batches, newest first, by keyset (lab staff); `format=csv`: every matching one."""
    page = {name: args.pop(name, None) for name in ("format", "limit", "after")}
    filters = exports.QcFilter(**args)
    if page["format"] == "csv":
        return csv_download(lambda s: exports.qc_csv(s, actor(), filters), "qc-results")
    return exports.qc_page(read_session(), actor(), filters, limit=page["limit"], after=page["after"])
