"""Passwords (Argon2), bearer tokens (stored only as SHA-256 hashes), the acting user, and the
record of sign-ins, sign-outs and lockouts (``auth_events``, append-only).

R-SIG-1's lockout covers every wrong password entered for an account: failed signatures and
failed sign-ins count together, five within 15 minutes lock it until an admin unlocks it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Row, func, select, update
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, AuthEventKind, AuthOutcome, Role, require
from labtrack.domain.errors import (
    AccountLocked,
    DomainError,
    InvalidCredentials,
    PasswordChangeRequired,
    Unauthenticated,
    ValidationFailed,
)
from labtrack.domain.signatures import FAILURE_WINDOW, locks_account
from labtrack.models import ApiToken, AuthEvent, SignatureFailure, User
from labtrack.services.streams import append_admin_event

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
    """The Argon2id hash stored for ``password``."""
    return _hasher.hash(password)


def password_matches(user: User | None, password: str) -> bool:
    """Whether ``password`` is the user's; no user costs the same time as a wrong password."""
    try:
        return _hasher.verify(user.password_hash if user else _dummy_hash, password) and user is not None
    except (VerificationError, InvalidHashError):
        return False


def signing_password_matches(user: User, password: str) -> bool:
    """A signature's password (R-SIG-1): the signing password when the user has one (SSO, R-OPS-4), else theirs."""
    if user.signing_password_hash is None:
        return password_matches(user, password)
    try:
        return _hasher.verify(user.signing_password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def actor_of(user: User | Row) -> Actor:
    """The acting user, from its row (an entity or the token lookup's columns)."""
    return Actor(
        id=user.id,
        username=user.username,
        full_name=user.full_name,
        role=Role(user.role),
        clinic_id=user.clinic_id,
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Client:
    """Where a request came from, as the server saw it: the adapter (api, web) and the peer."""

    channel: str
    address: str | None = None
    user_agent: str | None = None


INTERNAL = Client(channel="internal")  # a token issued by code (benchmarks), not by a request
LOCKED_DETAIL = "This account is locked after repeated wrong passwords; an admin must unlock it."
LOCKED_NOW_DETAIL = (
    "Five wrong passwords in 15 minutes (sign-ins and signatures): the account is locked until an admin unlocks it."
)


def record_event(
    session: Session,
    event: AuthEventKind,
    outcome: AuthOutcome,
    client: Client,
    *,
    username: str,
    user_id: int | None,
    reason: str | None = None,
) -> None:
    """Append one authentication event, timed by the server's clock."""
    session.add(
        AuthEvent(
            at=utcnow(),
            event=event.value,
            outcome=outcome.value,
            reason=reason,
            username=username[:64],
            user_id=user_id,
            channel=client.channel,
            address=client.address[:64] if client.address else None,
            user_agent=client.user_agent[:300] if client.user_agent else None,
        )
    )


def list_events(session: Session, actor: Actor, *, username: str | None = None, limit: int = 100) -> list[AuthEvent]:
    """The authentication record, newest first (admins only: it names addresses and failed usernames)."""
    require(actor, Action.MANAGE_REFERENCE)
    query = select(AuthEvent).order_by(AuthEvent.id.desc()).limit(limit)
    if username is not None:
        query = query.where(AuthEvent.username == username)
    return list(session.execute(query).scalars())


def recent_password_failures(session: Session, user: User) -> int:
    """Wrong passwords for this account within the window since its last unlock: signatures and sign-ins."""
    since = max(utcnow() - FAILURE_WINDOW, user.failures_reset_at or utcnow() - FAILURE_WINDOW)
    signatures = select(func.count()).where(SignatureFailure.user_id == user.id, SignatureFailure.at > since)
    sign_ins = select(func.count()).where(
        AuthEvent.user_id == user.id,
        AuthEvent.event == AuthEventKind.SIGN_IN.value,
        AuthEvent.reason == "wrong_password",
        AuthEvent.at > since,
    )
    return session.execute(signatures).scalar_one() + session.execute(sign_ins).scalar_one()


def wrong_password_refusal(session: Session, user: User, refusal: DomainError) -> tuple[DomainError, bool]:
    """R-SIG-1: what a wrong password answers, and whether it locks the account (the fifth in the window)."""
    lock = locks_account(recent_password_failures(session, user))
    return (AccountLocked(LOCKED_NOW_DETAIL) if lock else refusal), lock


def lock_account(session: Session, user_id: int, client: Client) -> None:
    """R-SIG-1: lock until an admin unlocks; recorded on the admin chain and as an auth event."""
    user = session.get(User, user_id)
    if user is None or user.locked_at is not None:
        return
    user.locked_at = utcnow()
    append_admin_event(
        session,
        "system",
        "user_locked",
        {"key": user.username, "reason": "five wrong passwords (sign-in or signature)"},
    )
    record_event(
        session,
        AuthEventKind.LOCKOUT,
        AuthOutcome.FAILURE,
        client,
        username=user.username,
        user_id=user.id,
        reason="password",
    )


def issue_token(
    session: Session,
    username: str,
    password: str,
    lifetime: timedelta,
    client: Client = INTERNAL,
    *,
    new_password: str | None = None,
) -> tuple[str, datetime, User]:
    """Exchange a username and password for a bearer token (shown once, stored hashed).

    Every attempt is recorded. A wrong password for an existing account counts toward
    R-SIG-1's lockout; the fifth within 15 minutes locks the account (423). After an
    admin reset the password, the user gets no token until they choose a new one
    (``new_password``; 403 ``password_change_required`` without it).
    """
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    matches = password_matches(user, password)  # an unknown name costs the same Argon2 time as a known one
    if user is None or not matches:
        raise _refused(session, username, user, client, "unknown_user" if user is None else "wrong_password")
    if not user.active:
        raise _refused(session, username, user, client, "deactivated")
    if user.locked_at is not None:
        raise _refused(session, username, user, client, "account_locked")
    if new_password is not None:
        choose_password(session, user, password, new_password)
    elif user.must_change_password:
        raise _refused(session, username, user, client, "password_change_required")
    token, expires_at = new_token(session, user, lifetime)
    record_event(session, AuthEventKind.SIGN_IN, AuthOutcome.SUCCESS, client, username=username, user_id=user.id)
    return token, expires_at, user


def new_token(session: Session, user: User, lifetime: timedelta) -> tuple[str, datetime]:
    """A new bearer token for a user already authenticated (password or SSO): shown once, stored hashed."""
    token = secrets.token_urlsafe(32)
    expires_at = utcnow() + lifetime
    session.add(ApiToken(token_hash=_token_hash(token), user_id=user.id, expires_at=expires_at))
    return token, expires_at


def choose_password(session: Session, user: User, current: str, new: str) -> None:
    """The user's own new password (after an admin reset, or any time): long enough, not the current one."""
    if len(new) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed({"new_password": [f"must be at least {MIN_PASSWORD_LENGTH} characters"]})
    if new == current:
        raise ValidationFailed({"new_password": ["must differ from the current password"]})
    user.password_hash = hash_password(new)
    user.must_change_password = False
    append_admin_event(session, user.username, "password_changed", {"key": user.username})


def _refused(session: Session, username: str, user: User | None, client: Client, reason: str) -> DomainError:
    """The refusal to raise; its ``record`` runs after the rollback (``Database.write``)."""
    lock = False
    error: DomainError
    if reason == "account_locked":
        error = AccountLocked(LOCKED_DETAIL)
    elif reason == "password_change_required":
        error = PasswordChangeRequired(
            "Your password was reset by an admin: choose a new password to sign in "
            "(on the sign-in page, or POST /api/v1/auth/password)."
        )
    else:
        error = InvalidCredentials("Unknown username, wrong password, or deactivated account.")
        if reason == "wrong_password" and user is not None and user.active and user.locked_at is None:
            error, lock = wrong_password_refusal(session, user, error)
    user_id = user.id if user is not None else None

    def record(unit: Session) -> None:
        record_event(
            unit, AuthEventKind.SIGN_IN, AuthOutcome.FAILURE, client, username=username, user_id=user_id, reason=reason
        )
        if lock and user_id is not None:
            lock_account(unit, user_id, client)

    error.record = record
    return error


def actor_for_token(session: Session, token: str) -> Actor:
    """The active user behind a live token; deactivation takes effect on the next request."""
    # The columns an Actor needs, as a Core query: the one statement every API request makes builds
    # no ORM entity.
    users, tokens = User.__table__.c, ApiToken.__table__.c
    query = (
        select(users.id, users.username, users.full_name, users.role, users.clinic_id, users.locked_at)
        .join_from(User.__table__, ApiToken.__table__, tokens.user_id == users.id)
        .where(
            tokens.token_hash == _token_hash(token),
            tokens.revoked_at.is_(None),
            tokens.expires_at > utcnow(),
            users.active.is_(True),
        )
    )
    row = session.connection().execute(query).one_or_none()
    if row is None:
        raise Unauthenticated("The bearer token is missing, expired or revoked, or its user is deactivated.")
    if row.locked_at is not None:  # R-SIG-1: say why (423), so the client does not just sign in again
        raise AccountLocked(LOCKED_DETAIL)
    return actor_of(row)


def revoke_token(session: Session, token: str, client: Client = INTERNAL) -> None:
    """Sign out: the token stops working at once; a live token's revocation is recorded."""
    row = session.execute(
        select(ApiToken).where(ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None))
    ).scalar_one_or_none()
    if row is None:
        return
    row.revoked_at = utcnow()
    user = session.get(User, row.user_id)
    if user is not None:
        record_event(
            session, AuthEventKind.SIGN_OUT, AuthOutcome.SUCCESS, client, username=user.username, user_id=user.id
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
