"""Audit trail: chain verification (R-AUD-3), signed checkpoints and offline exports (R-AUD-4)."""

from __future__ import annotations

from flask import Response, current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from labtrack.api.common import actor, authenticate, database, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, AuditQueryArgsSchema, AuditReportSchema
from labtrack.audit import chains, checkpoints, export, keys
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


@blp.get("/audit/verify")
@blp.arguments(AuditQueryArgsSchema, location="query")
@blp.response(200, AuditReportSchema)
@refusals(blp, 403, 404)
def verify(args: dict):
    """Recompute every chain (or one DIN's), check them against the latest checkpoint, name each failure (QA, admin)."""
    trusted = keys.trusted_public_key(current_app.config)
    return chains.verify(read_session(), actor(), args.get("din"), public_key=trusted).as_dict()


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
@refusals(blp, 403, 404, 422)
def audit_export(din: str):
    """A batch's events with their canonical bytes, a signed checkpoint and the inclusion proof (QA; clinic: own)."""
    lines = export.export(
        database(), actor(), din, keys.lab_key(current_app.config), current_app.config["LABTRACK_FIN"]
    )
    name = f"audit-export-{parse_din(din).value}.jsonl"
    return Response(
        "\n".join(lines) + "\n",
        mimetype="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
