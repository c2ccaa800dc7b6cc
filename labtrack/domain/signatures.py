"""Electronic signatures (21 CFR Part 11 §11.50, §11.200; R-SIG-1..3).

A signature is the signer re-entering their password in the same request. Its
manifestation (printed name, username, UTC time, meaning) is stored in the signed
event's data, so it is covered by the event's hash, and it names the hash of the
record it signs, so it cannot be moved to another record.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from labtrack.domain.actors import Actor
from labtrack.domain.errors import ValidationFailed
from labtrack.domain.hashing import iso_utc

LOCK_AFTER_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)


class Meaning(StrEnum):
    VERIFIED = "verified"
    APPROVED = "approved"
    REJECTED = "rejected"
    REVIEWED = "reviewed"  # QA's conclusion on an adverse reaction or a lookback (R-ADV-3, R-LBK-4)


def check_meaning(given: str, expected: Meaning) -> None:
    if given != expected.value:
        raise ValidationFailed({"signature.meaning": [f"must be '{expected.value}' for this action"]})


def manifestation(signer: Actor, meaning: Meaning, signed_at: datetime, record_hash: str) -> dict[str, Any]:
    """What is shown wherever the signature is displayed or printed (R-SIG-2), bound by hash (R-SIG-3)."""
    return {
        "printed_name": signer.full_name,
        "username": signer.username,
        "signed_at": iso_utc(signed_at),
        "meaning": meaning.value,
        "record_hash": record_hash,
    }


def locks_account(previous_failures_in_window: int) -> bool:
    """R-SIG-1: the fifth failure within 15 minutes locks the account."""
    return previous_failures_in_window + 1 >= LOCK_AFTER_FAILURES
