"""Temperature-logger import for a transport leg (R-TMP-1): multipart upload, 5 MB at most."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app, request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields
from webargs.flaskparser import FlaskParser
from webargs.multidictproxy import MultiDictProxy
from werkzeug.datastructures import CombinedMultiDict, FileStorage

from labtrack.api.common import actor, authenticate, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, Text, UserSummarySchema
from labtrack.domain.temperature import MAX_BYTES
from labtrack.services import temperatures


class _UploadParser(FlaskParser):
    """Reads a multipart body's form fields and files as one set of arguments."""


upload_parser = _UploadParser()
upload_parser.unknown = None  # each schema's own: RAISE, as for every other request


@upload_parser.location_loader("multipart")
def _multipart(request: Any, schema: Schema) -> MultiDictProxy:
    return MultiDictProxy(CombinedMultiDict([request.form, request.files]), schema)


class UploadBlueprint(Blueprint):
    ARGUMENTS_PARSER = upload_parser
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {  # noqa: RUF012 (as flask-smorest declares it)
        **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "multipart": "multipart/form-data",
    }


blp = UploadBlueprint("temperatures", __name__, description="Temperature-logger files for transport legs.")
blp.before_request(authenticate)
# The request may carry a 5 MB file and its multipart framing; the file itself is held to 5 MB.
UPLOAD_LIMIT = MAX_BYTES + 64 * 1024
UPLOAD_ENDPOINTS = {"temperatures.import_log", "web.card"}


class File(fields.Raw):
    """An uploaded file (a multipart part with a filename), not a text field."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> FileStorage:
        if not isinstance(value, FileStorage):
            raise ValidationError("send the logger's CSV export as a file")
        return value


class LoggerUploadSchema(Schema):
    file = File(required=True, metadata={"type": "string", "format": "binary", "description": "the logger's CSV"})
    timezone = Text(
        required=True, metadata={"description": "IANA name of the zone of the file's times, e.g. Europe/Berlin"}
    )


class TemperatureLogSchema(Schema):
    leg = fields.Integer()
    din = fields.Function(lambda log: log.din)
    file_sha256 = fields.String()
    filename = fields.String()
    timezone = fields.String()
    imported_by = fields.Nested(UserSummarySchema)
    imported_at = UTC()
    event_seq = fields.Integer()
    handed_off_at = UTC(attribute="started_at")
    received_at = UTC(attribute="ended_at")
    range_c = fields.Function(lambda log: [log.low_c, log.high_c])
    readings = fields.Function(lambda log: len(log.readings))
    min_c = fields.Float()
    max_c = fields.Float()
    mean_c = fields.Float()
    minutes_out_of_range = fields.Float()
    excursion = fields.Function(lambda log: log.excursion)


def allow_uploads(app: Flask) -> None:
    """Raise the body limit for the upload endpoints only, before anything (CSRF) reads the form."""

    def limit() -> None:
        if request.endpoint in UPLOAD_ENDPOINTS and request.mimetype == "multipart/form-data":
            request.max_content_length = UPLOAD_LIMIT

    app.before_request_funcs.setdefault(None, []).insert(0, limit)


@blp.post("/batches/<string:din>/custody/legs/<int:leg>/temperatures")
@blp.arguments(LoggerUploadSchema, location="multipart")
@blp.response(201, TemperatureLogSchema)
@refusals(blp, 403, 404, 409, 413, 422)
def import_log(body: dict, din: str, leg: int):
    """Import the leg's logger CSV (time, °C), its time zone declared; the readings must cover the leg ± 15 min.

    The same file twice, or a second file for the leg, is 409; a file that cannot be read is 422
    naming the line (`line`); over 5 MB, 413. Time outside the transport range beyond
    `LABTRACK_EXCURSION_MINUTES` opens a `temperature_excursion` deviation.
    """
    upload = temperatures.upload_of(body["file"], body["timezone"])
    allowed = float(current_app.config["LABTRACK_EXCURSION_MINUTES"])
    return write(
        lambda s: temperatures.import_log(s, actor(), din, leg, upload, allowed_minutes=allowed), TemperatureLogSchema()
    )
