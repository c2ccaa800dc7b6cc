"""Audit trail verification (R-AUD-3)."""

from __future__ import annotations

from flask_smorest import Blueprint

from labtrack.api.common import actor, authenticate, read_session
from labtrack.api.schemas import AuditQueryArgsSchema, AuditReportSchema
from labtrack.audit import chains

blp = Blueprint("audit", __name__, description="Verify the hash chains of the audit trail.")
blp.before_request(authenticate)


@blp.get("/audit/verify")
@blp.arguments(AuditQueryArgsSchema, location="query")
@blp.response(200, AuditReportSchema)
def verify(args: dict):
    """Recompute every chain (or one DIN's) and name the first broken link per batch (QA, admin)."""
    return chains.verify(read_session(), actor(), args.get("din")).as_dict()
