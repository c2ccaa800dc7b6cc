"""Passwords (Argon2), bearer tokens (stored only as SHA-256 hashes) and the acting user."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Actor, Role
from labtrack.domain.errors import AccountLocked, InvalidCredentials, Unauthenticated
from labtrack.models import ApiToken, User

_hasher = PasswordHasher()
# Verifying against this keeps unknown usernames as slow as known ones.
_dummy_hash = _hasher.hash("labtrack-timing-equaliser")


def configure_hashing(time_cost: int, memory_kib: int) -> None:
    """Argon2 cost, from configuration (tests lower it; stored hashes carry their own parameters)."""
    global _hasher, _dummy_hash
    if (time_cost, memory_kib) != (_hasher.time_cost, _hasher.memory_cost):
        _hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)
        _dummy_hash = _hasher.hash("labtrack-timing-equaliser")


MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(user: User | None, password: str) -> bool:
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def actor_of(user: User) -> Actor:
    return Actor(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=Role(user.role),
        clinic_id=user.clinic_id,
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, username: str, password: str, lifetime: timedelta) -> tuple[str, datetime, User]:
    """Exchange a username and password for a bearer token (shown once, stored hashed)."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if not password_matches(user, password) or user is None or not user.active:
        raise InvalidCredentials("Unknown username, wrong password, or deactivated account.")
    if user.locked_at is not None:
        raise AccountLocked("This account is locked after repeated failed signatures; an admin must unlock it.")
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + lifetime
    session.add(ApiToken(token_hash=_token_hash(token), user_id=user.id, expires_at=expires_at))
    return token, expires_at, user


def actor_for_token(session: Session, token: str) -> Actor:
    """The active user behind a live token; deactivation takes effect on the next request."""
    row = session.execute(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(
            ApiToken.token_hash == _token_hash(token),
            ApiToken.revoked_at.is_(None),
            ApiToken.expires_at > utcnow(),
            User.active.is_(True),
        )
    ).scalar_one_or_none()
    if row is None:
        raise Unauthenticated("The bearer token is missing, expired or revoked, or its user is deactivated.")
    if row.locked_at is not None:  # R-SIG-1: say why (423), so the client does not just sign in again
        raise AccountLocked("This account is locked after repeated failed signatures; an admin must unlock it.")
    return actor_of(row)


def revoke_token(session: Session, token: str) -> None:
    session.execute(
        update(ApiToken)
        .where(ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def revoke_user_tokens(session: Session, user_id: int) -> None:
    """Deactivation ends every token for good: reactivating the account later does not revive them."""
    session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None)).values(revoked_at=utcnow())
    )


def extend_token(session: Session, token: str, *, idle: timedelta, absolute: timedelta) -> None:
    """Slide a live token's expiry to ``idle`` from now, never past ``absolute`` after it was issued.

    Web sessions are tokens issued with the inactivity timeout as lifetime; each use
    extends them, so an unused session ends on its own, and a busy one after ``absolute``.
    """
    row = session.execute(
        select(ApiToken).where(
            ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None), ApiToken.expires_at > utcnow()
        )
    ).scalar_one_or_none()
    if row is not None:
        row.expires_at = max(row.expires_at, min(utcnow() + idle, row.created_at + absolute))
