"""Follow-up visits and photos, follow-up plans, the outcomes report and quality trends (requirements §11)."""

from __future__ import annotations

from flask import Response, current_app, request
from flask_smorest import Blueprint

from labtrack import extensions
from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.exports import csv_download
from labtrack.api.outcome_schemas import (
    AttachmentSchema,
    AttachmentUploadSchema,
    BaselineResetSchema,
    FollowUpCreateSchema,
    FollowUpSchema,
    OutcomesQueryArgsSchema,
    OutcomesSchema,
    PlanProposalSchema,
    PlanSchema,
    TrendBaselineSchema,
    TrendSchema,
)
from labtrack.api.schemas import SignedSchema
from labtrack.domain.errors import PayloadTooLarge
from labtrack.domain.photos import MAX_BYTES
from labtrack.services import attachments, exports, followups, trends

blp = Blueprint("outcomes", __name__, description="Follow-up outcomes and quality trends.")
blp.before_request(authenticate)
UPLOAD_ENDPOINT = "outcomes.upload_attachment"
MULTIPART_ALLOWANCE = 64 * 1024  # the form's boundaries and headers around a 10 MB photo


@blp.before_request
def photo_size_limit() -> None:
    """A photo may be up to 10 MB; every other request keeps the app's 1 MiB limit."""
    if request.endpoint != UPLOAD_ENDPOINT:
        return
    limit = MAX_BYTES + MULTIPART_ALLOWANCE
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge("The photo is larger than 10 MB; nothing was stored.")
    request.max_content_length = limit


# --- follow-up plans (R-OUT-1) -----------------------------------------------------------------


@blp.get("/follow-up-plans")
@blp.response(200, PlanSchema(many=True))
@refusals(blp)
def list_plans():
    """Every version of each tissue source's follow-up plan: the one in force is the highest approved."""
    return followups.list_plans(read_session())


@blp.post("/follow-up-plans/<string:tissue_source>")
@blp.arguments(PlanProposalSchema)
@blp.response(201, PlanSchema)
@refusals(blp, 403, 404, 409, 413)
def propose_plan(body: dict, tissue_source: str):
    """An admin proposes the next version of a plan with a reason; it is in force once QA approves it."""
    reason = body.pop("reason")
    return write(lambda s: followups.propose_plan(s, actor(), tissue_source, body, reason=reason), PlanSchema())


@blp.post("/follow-up-plans/<string:tissue_source>/<int:version>/approve")
@blp.arguments(SignedSchema)
@blp.response(200, PlanSchema)
@refusals(blp, 403, 404, 409, 413)
def approve_plan(body: dict, tissue_source: str, version: int):
    """QA, not the proposer, approves a proposed version with a signature meaning `approved`."""
    return write(lambda s: followups.approve_plan(s, actor(), tissue_source, version, **body), PlanSchema(), status=200)


# --- visits and photos (R-OUT-2, R-OUT-3) ------------------------------------------------------


@blp.get("/batches/<string:din>/follow-ups")
@blp.response(200, FollowUpSchema(many=True))
@refusals(blp, 404, 422)
def list_follow_ups(din: str):
    """The batch's follow-up visits, scheduled at administration: due, done or missed."""
    return followups.follow_ups(read_session(), actor(), din)


@blp.post("/batches/<string:din>/follow-ups/<string:visit>")
@blp.arguments(FollowUpCreateSchema)
@blp.response(201, FollowUpSchema)
@refusals(blp, 403, 404, 409, 413)
def record_follow_up(body: dict, din: str, visit: str):
    """A user of the batch's clinic records a visit; outside its window it needs `late_reason`; twice is 409."""
    return write(lambda s: followups.record(s, actor(), din, visit, **body), FollowUpSchema())


@blp.post("/batches/<string:din>/attachments")
@blp.arguments(AttachmentUploadSchema, location="files")
@blp.response(201, AttachmentSchema)
@refusals(blp, 403, 404, 409, 413)
def upload_attachment(files: dict, din: str):
    """A follow-up photo (multipart field `file`): JPEG or PNG by content, at most 10 MB, metadata removed."""
    data = files["file"].read()
    return write(lambda s: attachments.upload(s, actor(), din, data), AttachmentSchema())


@blp.get("/batches/<string:din>/attachments/<int:attachment_id>")
@blp.response(200, description="The stored photo (JPEG or PNG, without metadata).", content_type="image/jpeg")
@blp.alt_response(200, description="A PNG photo.", content_type="image/png", success=True)
@refusals(blp, 404, 422)
def get_attachment(din: str, attachment_id: int):
    """A photo, for whoever may read the batch."""
    photo = attachments.get(read_session(), actor(), din, attachment_id)
    return Response(photo.content, mimetype=photo.content_type, headers={"X-Content-SHA256": photo.sha256})


# --- the outcomes report (R-OUT-5) -------------------------------------------------------------


@blp.get("/reports/outcomes")
@blp.arguments(OutcomesQueryArgsSchema, location="query")
@blp.response(200, OutcomesSchema)
@blp.alt_response(200, description="The rows as CSV (`?format=csv`).", content_type="text/csv", success=True)
@refusals(blp, 403)
def outcomes_report(args: dict):
    """Per batch the baseline, change per visit and dose; per visit n, mean, median, 95 % CI; dose–response slope."""
    if args.pop("format") == "json":
        return extensions.outcomes_report(current_app, actor(), **args)
    return csv_download(lambda s: exports.outcomes_csv(s, actor(), **args), "outcomes")  # no statistics in rows


# --- trends (R-SPC-1..3) -----------------------------------------------------------------------


@blp.get("/trends/<string:tissue_source>/<string:metric>")
@blp.response(200, TrendSchema)
@refusals(blp, 403, 404)
def trend(tissue_source: str, metric: str):
    """An I-MR chart's points with their Nelson flags, centre line and limits (QA)."""
    return trends.trend(read_session(), actor(), tissue_source, metric)


@blp.post("/trends/<string:tissue_source>/<string:metric>/baseline")
@blp.arguments(BaselineResetSchema)
@blp.response(201, TrendBaselineSchema)
@refusals(blp, 403, 404, 413)
def reset_baseline(body: dict, tissue_source: str, metric: str):
    """QA restarts the chart's baseline at the first batch released at or after `starts_at`, signed with a reason."""
    return write(lambda s: trends.reset_baseline(s, actor(), tissue_source, metric, **body), TrendBaselineSchema())
