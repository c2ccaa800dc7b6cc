"""Signing inside a unit of work (R-SIG-1..3): password re-entry, failures recorded, lockout."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor
from labtrack.domain.errors import AccountLocked, DomainError, SignatureInvalid
from labtrack.domain.signatures import Meaning, check_meaning, manifestation
from labtrack.models import Batch, SignatureFailure, User
from labtrack.services.auth import (
    LOCKED_DETAIL,
    Client,
    lock_account,
    signing_password_matches,
    wrong_password_refusal,
)
from labtrack.services.streams import append_batch_event

SIGNING = Client(channel="signature")


def sign(
    session: Session,
    signer: Actor,
    signature: dict[str, Any],
    expected: Meaning,
    record_hash: str,
    batch: Batch | None,
) -> dict[str, Any]:
    """Check the re-entered password and return the manifestation to store in the signed event.

    A wrong password rolls the request back and then records the failure (on the
    batch's stream and in ``signature_failures``); the fifth wrong password within
    15 minutes (failed sign-ins count too) locks the account until an admin unlocks it.
    """
    check_meaning(signature.get("meaning", ""), expected)
    user = session.get(User, signer.id)
    if user is None or user.locked_at is not None:
        raise AccountLocked(LOCKED_DETAIL)
    if not signing_password_matches(user, signature.get("password", "")):
        raise _failure(session, user, signer, expected, batch)
    return manifestation(signer, expected, utcnow(), record_hash)


def _failure(session: Session, user: User, signer: Actor, meaning: Meaning, batch: Batch | None) -> DomainError:
    error, lock = wrong_password_refusal(
        session,
        user,
        SignatureInvalid("The password does not match: the signature was not applied. The attempt is recorded."),
    )
    user_id, batch_id = user.id, batch.id if batch else None

    def record(unit: Session) -> None:
        now = utcnow()
        unit.add(SignatureFailure(user_id=user_id, at=now, meaning=meaning.value, batch_id=batch_id))
        if batch_id is not None:
            locked_batch = unit.execute(select(Batch).where(Batch.id == batch_id).with_for_update(of=Batch)).unique()
            append_batch_event(
                unit, locked_batch.scalar_one(), signer, "signature_failed", {"meaning": meaning.value, "locked": lock}
            )
        if lock:
            lock_account(unit, user_id, SIGNING)

    error.record = record
    return error
