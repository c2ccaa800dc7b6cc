"""Audit trail: chain verification (R-AUD-3), signed checkpoints and offline exports (R-AUD-4)."""

from __future__ import annotations

import json

from flask import Response, current_app, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from labtrack import extensions
from labtrack.api.common import actor, authenticate, database, read_session, take_request_write_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, AuditQueryArgsSchema, AuditReportSchema
from labtrack.audit import chains, checkpoints, export, keys, runs
from labtrack.domain.din import parse_din

blp = Blueprint("audit", __name__, description="Verify the audit trail; signed checkpoints and batch exports.")
blp.before_request(authenticate)


class CheckpointSchema(Schema):
    id = fields.Integer()
    created_at = UTC()
    tree_size = fields.Integer(metadata={"description": "number of streams (batches, and the admin chain)"})
    root = fields.String(metadata={"description": "RFC 6962 Merkle root, hex"})
    statement = fields.String(metadata={"description": "the exact text signed"})
    signature = fields.String(metadata={"description": "Ed25519 signature over the statement, hex"})
    algorithm = fields.String()
    key_id = fields.String(metadata={"description": "SHA-256 of the raw public key, hex"})


class VerificationProgressSchema(Schema):
    batches_done = fields.Integer()
    batches_total = fields.Integer()
    events_done = fields.Integer()
    percent = fields.Float(metadata={"description": "batches done, in percent of the batches when the run was asked"})


class VerificationRunSchema(Schema):
    id = fields.Integer()
    status = fields.String(metadata={"description": "queued, running, done or failed (the run itself broke)"})
    requested_at = UTC()
    started_at = UTC(allow_none=True)
    finished_at = UTC(allow_none=True)
    progress = fields.Nested(VerificationProgressSchema)
    result = fields.Dict(allow_none=True, metadata={"description": "when done: the report, as GET /audit/verify's"})
    error = fields.String(allow_none=True)


@blp.get("/audit/verify")
@blp.arguments(AuditQueryArgsSchema, location="query")
@blp.response(200, AuditReportSchema)
@refusals(blp, 403, 404)
def verify(args: dict):
    """Incremental verification: the events since the newest verified checkpoint, each batch extending the head
    it signed (``mode``: incremental); with ``din``, that batch's whole chain (``mode``: full). A full run over
    every chain is ``POST /audit/verifications`` (QA, admin)."""
    trusted = keys.trusted_public_key(current_app.config)
    if args.get("din"):
        return chains.verify_batch(read_session(), actor(), args["din"], public_key=trusted).as_dict()
    return chains.verify_recent(read_session(), actor(), public_key=trusted).as_dict()


@blp.post("/audit/verifications")
@blp.response(202, VerificationRunSchema, headers={"Location": {"schema": {"type": "string"}}})
@refusals(blp, 403)
def start_full_verification():
    """Start a full verification of every chain in the background, or answer the one already under way (QA, admin).

    Answers 202 with the run and its ``Location``; poll ``GET /audit/verifications/{id}`` for progress and result.
    """
    who = actor()

    def work(session):
        run, new = runs.request_full(session, who)
        return runs.as_dict(run), new

    run, new = database().write(work, session=take_request_write_session())
    if new:
        extensions.hand_to_worker(current_app, run["id"])
    body = json.dumps(VerificationRunSchema().dump(run))
    location = url_for("audit.verification", run_id=run["id"])
    return Response(body, status=202, mimetype="application/json", headers={"Location": location})


@blp.get("/audit/verifications/<int:run_id>")
@blp.response(200, VerificationRunSchema)
@refusals(blp, 403, 404, 422)
def verification(run_id: int):
    """A full verification run: status, progress and, once done, its result (QA, admin)."""
    return runs.as_dict(runs.get(read_session(), actor(), run_id))


@blp.get("/audit/checkpoints")
@blp.response(200, CheckpointSchema(many=True))
@refusals(blp, 403)
def list_checkpoints():
    """Signed checkpoints, newest first (QA, admin)."""
    return [checkpoints.as_dict(c) for c in checkpoints.listing(read_session(), actor())]


@blp.post("/audit/checkpoints")
@blp.response(201, CheckpointSchema)
@refusals(blp, 403, 409, 422)
def make_checkpoint():
    """Sign a checkpoint of every stream head now (QA, admin)."""
    key, origin, who = keys.lab_key(current_app.config), current_app.config["LABTRACK_FIN"], actor()
    return write(lambda s: checkpoints.as_dict(checkpoints.create(s, key, origin, who)), CheckpointSchema())


@blp.get("/audit/public-key")
@blp.response(200, description="The lab's Ed25519 public key (PEM).", content_type="application/x-pem-file")
@refusals(blp)
def public_key():
    """The key that signs checkpoints, for offline verification (any signed-in user)."""
    key = keys.lab_key(current_app.config)
    return Response(key.public_pem, mimetype="application/x-pem-file", headers={"X-LabTrack-Key-Id": key.key_id})


@blp.get("/batches/<string:din>/audit-export")
@blp.response(
    200, description="JSON lines: header, events, checkpoint, inclusion proof.", content_type="application/x-ndjson"
)
@refusals(blp, 403, 404, 409, 422)
def audit_export(din: str):
    """A batch's events with their canonical bytes, the newest signed checkpoint and the inclusion proof
    (QA; clinic: own). 409 ``not_checkpointed_yet`` while no checkpoint covers the batch."""
    lines = export.export(database().reader, actor(), din)
    name = f"audit-export-{parse_din(din).value}.jsonl"
    return Response(
        "\n".join(lines) + "\n",
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
