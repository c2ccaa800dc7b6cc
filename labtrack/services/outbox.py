"""The transactional outbox: notifications written in the same transaction as their cause."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from labtrack.models import Batch, OutboxMessage


def enqueue(session: Session, topic: str, batch: Batch | None, payload: dict[str, Any]) -> OutboxMessage:
    message = OutboxMessage(
        topic=topic,
        batch_id=batch.id if batch else None,
        clinic_id=batch.clinic_id if batch else None,
        payload=payload | ({"din": batch.din} if batch else {}),
    )
    session.add(message)
    return message
