"""Photos attached to a batch (R-OUT-3): cleaned of metadata, stored once, served to those who may read the batch.

Each upload is a ``photo_attached`` event in the batch's chain carrying the stored
picture's SHA-256; the follow-up visit that shows it cites the same hash.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import photos
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.lifecycle import Status
from labtrack.models import Attachment
from labtrack.services import batches
from labtrack.services.streams import append_batch_event


def upload(session: Session, actor: Actor, din: str, data: bytes) -> Attachment:
    """Store a follow-up photo of an administered batch (the batch's clinic); refused input stores nothing."""
    batch = batches.get(session, actor, din, for_update=True)
    require(actor, Action.RECORD_FOLLOW_UP, batch.clinic_id, what="batch")
    if batch.status != Status.ADMINISTERED.value:
        raise Conflict("Photos belong to follow-up visits, which begin once the product is administered.")
    photo = photos.clean(data)
    now = utcnow()
    attachment = Attachment(
        batch_id=batch.id,
        sha256=photo.sha256,
        content_type=photo.content_type,
        size_bytes=len(photo.content),
        width=photo.width,
        height=photo.height,
        content=photo.content,
        uploaded_by_id=actor.id,
        uploaded_at=now,
        event_seq=batch.seq + 1,  # the event appended next; the row is never updated (append-only)
    )
    session.add(attachment)
    session.flush()
    append_batch_event(
        session,
        batch,
        actor,
        "photo_attached",
        {
            "attachment_id": attachment.id,
            "sha256": photo.sha256,
            "content_type": photo.content_type,
            "bytes": len(photo.content),
            "width": photo.width,
            "height": photo.height,
        },
        recorded_at=now,
    )
    return attachment


def get(session: Session, actor: Actor, din: str, attachment_id: int) -> Attachment:
    """A photo, for whoever may read its batch (another clinic's: 404, like a missing one)."""
    batch = batches.get(session, actor, din)
    attachment = session.execute(
        select(Attachment).where(Attachment.id == attachment_id, Attachment.batch_id == batch.id)
    ).scalar_one_or_none()
    if attachment is None:
        raise NotFound("No such photo.")
    return attachment
