"""Single sign-on (R-OPS-4): the identity provider authenticates, LabTrack authorizes.

An OpenID Connect sign-in arrives here as the ID token's validated claims (Authlib has
checked the signature, issuer, audience, expiry and nonce). The configured claim names
the LabTrack user: their username, or their e-mail address when the claim is
``email``. Only an existing, active, unlocked user gets a session; nobody is created
by signing in. Every attempt is an authentication event (channel ``sso``).

Part 11 (§11.200(a)) wants two distinct components at each signature. An SSO user's
password lives at the identity provider, out of LabTrack's reach, so LabTrack keeps a
signing password for them, set at first use right after a fresh SSO sign-in; R-SIG's
rules (length, lockout after five wrong entries) apply to it as to any password.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labtrack.domain.actors import Actor, AuthEventKind, AuthOutcome
from labtrack.domain.errors import AccountLocked, Conflict, DomainError, InvalidCredentials, ValidationFailed
from labtrack.models import User
from labtrack.services import auth
from labtrack.services.streams import append_admin_event

CHANNEL = "sso"
EMAIL_CLAIM = "email"
REFUSALS = {
    "sso_no_claim": "Your sign-in did not say who you are ({claim} is missing). Ask your IT department.",
    "unknown_user": "No LabTrack account matches your sign-in ({claim} {value}). Ask a LabTrack administrator.",
    "deactivated": "Your LabTrack account is deactivated. Ask a LabTrack administrator.",
    "account_locked": auth.LOCKED_DETAIL,
}


def _user_for(session: Session, claim: str, value: str) -> User | None:
    if claim == EMAIL_CLAIM:
        query = select(User).where(func.lower(User.email) == value.lower())
    else:
        query = select(User).where(User.username == value)
    return session.execute(query).unique().scalar_one_or_none()


def sign_in(
    session: Session, claims: dict[str, Any], claim: str, lifetime: timedelta, client: auth.Client
) -> tuple[str, datetime, User]:
    """A session token for the LabTrack user the validated ID token names, or the refusal saying why."""
    value = str(claims.get(claim) or "").strip()
    user = _user_for(session, claim, value) if value else None
    reason = None
    if not value:
        reason = "sso_no_claim"
    elif user is None:
        reason = "unknown_user"
    elif not user.active:
        reason = "deactivated"
    elif user.locked_at is not None:
        reason = "account_locked"
    if reason is not None:
        raise _refused(reason, claim, value, user, client)
    token, expires_at = auth.new_token(session, user, lifetime)
    auth.record_event(
        session, AuthEventKind.SIGN_IN, AuthOutcome.SUCCESS, client, username=user.username, user_id=user.id
    )
    return token, expires_at, user


def _refused(reason: str, claim: str, value: str, user: User | None, client: auth.Client) -> DomainError:
    detail = REFUSALS[reason].format(claim=claim, value=value)
    error: DomainError = AccountLocked(detail) if reason == "account_locked" else InvalidCredentials(detail)
    username, user_id = (user.username if user else value or "-"), (user.id if user else None)

    def record(unit: Session) -> None:
        auth.record_event(
            unit, AuthEventKind.SIGN_IN, AuthOutcome.FAILURE, client, username=username, user_id=user_id, reason=reason
        )

    error.record = record
    return error


def rejected(session: Session, client: auth.Client, reason: str) -> None:
    """Record a sign-in the provider's answer did not prove (bad state, token refused by validation)."""
    auth.record_event(
        session, AuthEventKind.SIGN_IN, AuthOutcome.FAILURE, client, username="-", user_id=None, reason=reason[:32]
    )


def needs_signing_password(session: Session, actor: Actor) -> bool:
    """Whether this single-sign-on user has yet to set the password their signatures need (R-OPS-4)."""
    user = session.get(User, actor.id)
    return user is not None and user.signing_password_hash is None


def set_signing_password(session: Session, actor: Actor, password: str, confirmation: str) -> None:
    """Set the SSO user's signing password, once (an administrator's password reset is the way to change it)."""
    user = session.get(User, actor.id)
    if user is None:
        raise InvalidCredentials("Sign in again.")
    if user.signing_password_hash is not None:
        raise Conflict("Your signing password is set already.")
    if len(password) < auth.MIN_PASSWORD_LENGTH:
        raise ValidationFailed({"password": [f"must be at least {auth.MIN_PASSWORD_LENGTH} characters"]})
    if password != confirmation:
        raise ValidationFailed({"confirmation": ["does not match the password"]})
    user.signing_password_hash = auth.hash_password(password)
    append_admin_event(session, actor.username, "signing_password_set", {"key": actor.username})
