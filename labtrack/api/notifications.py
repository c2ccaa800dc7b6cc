"""The signed-in user's own notifications (requirements §6), written by the outbox dispatcher."""

from __future__ import annotations

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import UTC, PageArgsSchema, page_of
from labtrack.services import notifications

blp = Blueprint("notifications", __name__, description="In-app notifications of the signed-in user.")
blp.before_request(authenticate)


class NotificationSchema(Schema):
    id = fields.Integer()
    topic = fields.String()
    din = fields.String(allow_none=True)
    message = fields.String()
    data = fields.Dict(attribute="payload")
    created_at = UTC()
    read = fields.Function(lambda n: n.read_at is not None)
    read_at = UTC(allow_none=True)


class NotificationQueryArgsSchema(PageArgsSchema):
    unread = fields.Boolean(load_default=False)


NotificationPageSchema = page_of(NotificationSchema, "NotificationPage")


@blp.get("/notifications")
@blp.arguments(NotificationQueryArgsSchema, location="query")
@blp.response(200, NotificationPageSchema)
@refusals(blp)
def list_notifications(args: dict):
    """The signed-in user's notifications, newest first, a keyset page at a time; `?unread=true` for unread ones."""
    return notifications.for_user(
        read_session(), actor(), unread_only=args["unread"], limit=args["limit"], after=args.get("after")
    )


@blp.post("/notifications/<int:notification_id>/read")
@blp.response(200, NotificationSchema)
@refusals(blp, 404, 409, 422)
def mark_read(notification_id: int):
    """Mark one of your notifications read (someone else's answers 404)."""
    return write(lambda s: notifications.mark_read(s, actor(), notification_id), NotificationSchema(), status=200)
