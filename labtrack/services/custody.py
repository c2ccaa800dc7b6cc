"""Chain of custody (R-CUS-1..4): one custodian at a time, hand-off to a named user, receipt."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import lifecycle, timing
from labtrack.domain.actors import Action, Actor
from labtrack.domain.errors import DomainError, ValidationFailed
from labtrack.domain.lifecycle import Status, check_handoff, check_receipt
from labtrack.domain.specifications import receipt_deviations
from labtrack.models import Batch, BatchEvent, User
from labtrack.services import deviations, outbox
from labtrack.services.auth import actor_of
from labtrack.services.steps import in_hand
from labtrack.services.streams import append_batch_event


def _active_users():
    """The users who may be named in a hand-off at all: the active ones (the rest is ``check_recipient``'s)."""
    return select(User).where(User.active.is_(True))


def recipients(session: Session, actor: Actor, batch: Batch) -> list[User]:
    """The active users ``actor`` may hand this batch to now (R-CUS-1), for a picker; ``handoff`` checks again."""
    state, now = lifecycle.state_of(batch), utcnow()
    allowed = []
    for user in session.execute(_active_users().order_by(User.role, User.full_name)).scalars():
        try:
            check_handoff(state, actor, actor_of(user), at=now)
        except DomainError:
            continue
        allowed.append(user)
    return allowed


def handoff(
    session: Session,
    actor: Actor,
    din: str,
    *,
    scanned_din: str | None,
    to_username: str,
    seal_id: str,
    temperature_c: float | None = None,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> BatchEvent:
    """The custodian hands the sealed container to one named, active user."""
    batch, state = in_hand(session, actor, din, scanned_din, Action.CUSTODY, "handoff")
    recipient_row = session.execute(_active_users().where(User.username == to_username)).scalar_one_or_none()
    if recipient_row is None:
        raise ValidationFailed({"to_username": ["no active user with this username"]})
    recipient = actor_of(recipient_row)
    now = utcnow()
    occurred_at = occurred_at or now
    new_status = check_handoff(state, actor, recipient, at=occurred_at)
    timing.check_occurred_at(
        occurred_at, now=now, last_physical_at=state.last_physical_at, late_entry_reason=late_entry_reason
    )
    data = {
        "scanned_din": scanned_din,
        "to": recipient.username,
        "to_full_name": recipient.full_name,
        "seal_id": seal_id,
        "temperature_c": temperature_c,
    }
    if late_entry_reason:
        data["late_entry_reason"] = late_entry_reason.strip()
    # The projection first: the event's flush writes it in the same UPDATE as the new head.
    batch.transfer_from_id = actor.id
    batch.transfer_to_id = recipient.id
    batch.transfer_seal_id = seal_id
    batch.transfer_status_before = state.status.value
    batch.transfer_at = occurred_at
    batch.status = new_status.value
    batch.last_physical_at = occurred_at
    event = append_batch_event(session, batch, actor, "handoff", data, occurred_at=occurred_at, recorded_at=now)
    if new_status == Status.DISPATCHED:
        outbox.enqueue(session, "batch.dispatched", batch, {"to": recipient.username, "seq": event.seq})
    else:  # their work list: the seal id is not told, the receipt stays blind
        handed = {"to_user_id": recipient.id, "from": actor.full_name, "seq": event.seq}
        outbox.enqueue(session, "batch.handed_to_you", batch, handed)
    session.flush()
    return event


def receipt(
    session: Session,
    actor: Actor,
    din: str,
    *,
    scanned_din: str | None,
    seal_id: str,
    temperature_c: float,
    condition: str,
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
) -> BatchEvent:
    """The named recipient receives; a broken seal, damage or excursion opens a deviation (R-CUS-4)."""
    batch, state = in_hand(session, actor, din, scanned_din, Action.CUSTODY, "receipt")
    new_status = check_receipt(state, actor)
    now = utcnow()
    occurred_at = occurred_at or now
    timing.check_occurred_at(
        occurred_at, now=now, last_physical_at=state.last_physical_at, late_entry_reason=late_entry_reason
    )
    assert state.transfer is not None  # check_receipt refused otherwise
    data = {
        "scanned_din": scanned_din,
        "from": batch.transfer_from.username if batch.transfer_from else None,
        "seal_id": seal_id,
        "handoff_seal_id": state.transfer.seal_id,
        "temperature_c": temperature_c,
        "condition": condition,
    }
    if late_entry_reason:
        data["late_entry_reason"] = late_entry_reason.strip()
    batch.custodian_id = actor.id
    batch.transfer_from_id = batch.transfer_to_id = None
    batch.transfer_seal_id = batch.transfer_status_before = None
    batch.transfer_at = None
    batch.status = new_status.value
    batch.last_physical_at = occurred_at
    event = append_batch_event(session, batch, actor, "receipt", data, occurred_at=occurred_at, recorded_at=now)
    session.refresh(batch, ["custodian"])
    found = receipt_deviations(
        handoff_seal=state.transfer.seal_id,
        seal_id=seal_id,
        condition=condition,
        temperature_c=temperature_c,
        spec=batch.specification.body,
    )
    for kind, description in found:
        deviations.open_on(session, batch, actor, kind, description, occurred_at=occurred_at)
    return event
