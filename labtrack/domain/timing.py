"""When things happened (R-SEQ-2, R-SEQ-3): ALCOA 'contemporaneous'.

``occurred_at`` is when it happened, ``recorded_at`` when it was written; both are
checked here against the server's clock, never the client's.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from labtrack.domain.errors import ValidationFailed

FUTURE_TOLERANCE = timedelta(minutes=5)
LATE_ENTRY_AFTER = timedelta(minutes=60)


def check_occurred_at(
    occurred_at: datetime,
    *,
    now: datetime,
    last_physical_at: datetime | None,
    late_entry_reason: str | None,
) -> None:
    """R-SEQ-2: aware, at most 5 min ahead, not before the previous physical event; late needs a reason."""
    if occurred_at.tzinfo is None:
        raise ValidationFailed({"occurred_at": ["must carry a timezone offset"]})
    if occurred_at > now + FUTURE_TOLERANCE:
        raise ValidationFailed({"occurred_at": ["is more than 5 minutes in the future"]})
    if last_physical_at is not None and occurred_at < last_physical_at:
        raise ValidationFailed(
            {"occurred_at": [f"is before the batch's previous physical event ({last_physical_at.isoformat()})"]}
        )
    if now - occurred_at > LATE_ENTRY_AFTER and not (late_entry_reason and late_entry_reason.strip()):
        raise ValidationFailed(
            {"late_entry_reason": ["is required when recording more than 60 minutes after the event"]}
        )


def check_harvest_window(started_at: datetime, ended_at: datetime, *, now: datetime) -> None:
    errors: dict[str, list[str]] = {}
    if started_at >= ended_at:
        errors["data.started_at"] = ["must be before ended_at"]
    for name, moment in (("started_at", started_at), ("ended_at", ended_at)):
        if moment > now + FUTURE_TOLERANCE:
            errors[f"data.{name}"] = ["is in the future"]
    if errors:
        raise ValidationFailed(errors)


def expiry(ended_at: datetime, stability_hours: float) -> datetime:
    """R-SEQ-3: harvest end + the specification's stability window."""
    return ended_at + timedelta(hours=stability_hours)


def check_planned_administration(planned: datetime | None, *, now: datetime) -> None:
    """A planned administration is a time to come: one in the past is refused (the clinic mistyped it)."""
    if planned is not None and planned < now:
        raise ValidationFailed(
            {"planned_administration_at": ["This date and time is in the past: plan the administration from now on."]}
        )
