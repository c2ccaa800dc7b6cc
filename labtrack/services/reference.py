"""Reference data managed by admins: clinics, users, reagent lots, equipment (R-ACC-2).

Every change is an event on the admin chain carrying the old and new values.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import formats
from labtrack.domain.actors import Action, Actor, Role, require
from labtrack.domain.errors import Conflict, NotFound, ValidationFailed
from labtrack.domain.hashing import jsonable
from labtrack.domain.lifecycle import TERMINAL
from labtrack.domain.materials import LotStatus, check_settable_lot_status
from labtrack.models import Batch, Clinic, Equipment, ReagentLot, User
from labtrack.services.auth import MIN_PASSWORD_LENGTH, hash_password, revoke_user_tokens
from labtrack.services.streams import append_admin_event


def _snapshot(row: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: jsonable(getattr(row, name)) for name in fields}


CLINIC_FIELDS = ("code", "name", "webhook_url")
USER_FIELDS = ("username", "full_name", "role", "clinic_id", "active", "locked_at", "email", "must_change_password")
RESERVED_USERNAMES = ("system",)  # the author of automatic events (labtrack.services.watchers)
_KEEP: Any = object()  # "not given" in a PATCH, where None clears a value
LOT_FIELDS = ("kind", "name", "lot_number", "expires_on", "status")
EQUIPMENT_FIELDS = ("code", "kind", "name", "calibration_due_on", "status")


def system_actor(name: str) -> Actor:
    """The actor for command-line administration (recorded by its OS user name)."""
    return Actor(id=0, username=name, full_name=name, role=Role.ADMIN, clinic_id=None)


def _audit(session: Session, actor_name: str, type: str, key: str, old: dict | None, new: dict) -> None:
    append_admin_event(session, actor_name, type, {"key": key, "old": old, "new": new})


def create_clinic(
    session: Session,
    actor: Actor,
    *,
    code: str,
    name: str,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> Clinic:
    """Add a clinic (admin); refuses a malformed or taken code. Audited on the admin chain."""
    require(actor, Action.MANAGE_REFERENCE)
    code = formats.CLINIC_CODE.check("code", code.strip()).upper()
    if session.execute(select(Clinic.id).where(Clinic.code == code)).first():
        raise Conflict(f"A clinic with code {code} already exists.")
    clinic = Clinic(code=code, name=name.strip(), webhook_url=webhook_url, webhook_secret=webhook_secret)
    session.add(clinic)
    session.flush()
    new = _snapshot(clinic, CLINIC_FIELDS) | {"webhook_secret_set": bool(webhook_secret)}
    _audit(session, actor.username, "clinic_created", code, None, new)
    return clinic


def list_clinics(session: Session, actor: Actor) -> list[Clinic]:
    """Every clinic, by code (admin)."""
    require(actor, Action.MANAGE_REFERENCE)
    return list(session.execute(select(Clinic).order_by(Clinic.code)).scalars())


def clinic_by_code(session: Session, code: str) -> Clinic:
    """The clinic with this code (any case); refuses an unknown code as a field error."""
    clinic = session.execute(select(Clinic).where(Clinic.code == code.strip().upper())).scalar_one_or_none()
    if clinic is None:
        raise ValidationFailed({"clinic": [f"no clinic with code {code!r}"]})
    return clinic


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed({"password": [f"must be at least {MIN_PASSWORD_LENGTH} characters"]})


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    full_name: str,
    role: str,
    password: str,
    clinic: str | None = None,
    email: str | None = None,
) -> User:
    """Add a user (admin); refuses a malformed, reserved or taken username, a bad e-mail, a short password, and a
    clinic given to a lab user or missing for a clinic user."""
    require(actor, Action.MANAGE_REFERENCE)
    username = formats.USERNAME.check("username", username.strip())
    if email is not None:
        formats.EMAIL.check("email", email)
    if username in RESERVED_USERNAMES:
        raise Conflict(f"The username {username} is reserved for LabTrack's automatic tasks.")
    role = Role(role)
    _check_password(password)
    if role == Role.CLINIC and not clinic:
        raise ValidationFailed({"clinic": ["a clinic user needs a clinic"]})
    if role != Role.CLINIC and clinic:
        raise ValidationFailed({"clinic": ["only clinic users belong to a clinic"]})
    clinic_row = clinic_by_code(session, clinic) if clinic else None
    if session.execute(select(User.id).where(User.username == username)).first():
        raise Conflict(f"The username {username} is taken (users are deactivated, never deleted).")
    user = User(
        username=username,
        full_name=full_name.strip(),
        role=role.value,
        clinic_id=clinic_row.id if clinic_row else None,
        password_hash=hash_password(password),
        active=True,
        email=email,
    )
    session.add(user)
    session.flush()
    _audit(session, actor.username, "user_created", username, None, _snapshot(user, USER_FIELDS))
    return user


def list_users(session: Session, actor: Actor) -> list[User]:
    """Every user, by username (admin)."""
    require(actor, Action.MANAGE_REFERENCE)
    return list(session.execute(select(User).order_by(User.username)).scalars())


def user_by_username(session: Session, username: str) -> User:
    """The user with this username; 404 if there is none."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"No user {username!r}.")
    return user


def update_user(
    session: Session,
    actor: Actor,
    username: str,
    *,
    active: bool | None = None,
    role: str | None = None,
    unlock: bool = False,
    email: str | None = _KEEP,
    full_name: str | None = None,
    clinic: str | None = None,
    password: str | None = None,
) -> User:
    """Change a user (admin): name, role, clinic, active, unlock, e-mail; ``password`` resets it to a temporary
    one the user must replace at the next sign-in (their sessions and tokens end now)."""
    require(actor, Action.MANAGE_REFERENCE)
    user = user_by_username(session, username)
    old = _snapshot(user, USER_FIELDS)
    if full_name is not None:
        if not full_name.strip():
            raise ValidationFailed({"full_name": ["is required"]})
        user.full_name = full_name.strip()
    if clinic is not None:
        _move_to_clinic(session, user, clinic)
    if password is not None:
        _check_password(password)
        user.password_hash = hash_password(password)
        user.must_change_password = True
        revoke_user_tokens(session, user.id)
    if active is not None:
        if not active and user.id == actor.id:
            raise ValidationFailed({"active": ["you cannot deactivate your own account"]})
        user.active = active
        if not active:
            revoke_user_tokens(session, user.id)
    if role is not None and Role(role) != Role(user.role):
        if Role.CLINIC in (Role(role), Role(user.role)):
            raise ValidationFailed({"role": ["clinic and lab roles cannot be swapped; create a new user"]})
        user.role = Role(role).value
    if unlock:
        user.locked_at = None
        user.failures_reset_at = utcnow()
    if email is not _KEEP:
        user.email = email if email is None else formats.EMAIL.check("email", email)
    session.flush()
    new = _snapshot(user, USER_FIELDS)
    if new != old:
        _audit(session, actor.username, "user_updated", username, old, new)
    return user


def _move_to_clinic(session: Session, user: User, code: str) -> None:
    """A clinic user moves to another clinic, unless they hold or are receiving a batch of their clinic."""
    if Role(user.role) != Role.CLINIC:
        raise ValidationFailed({"clinic": ["only clinic users belong to a clinic"]})
    target = clinic_by_code(session, code)
    if target.id == user.clinic_id:
        return
    holding = session.execute(
        select(Batch.din)
        .where((Batch.custodian_id == user.id) | (Batch.transfer_to_id == user.id))
        .where(Batch.status.not_in([s.value for s in TERMINAL]))
        .limit(1)
    ).scalar_one_or_none()
    if holding is not None:
        raise Conflict(f"{user.username} holds or is receiving batch {holding}: hand it over before the move.")
    user.clinic_id = target.id
    session.flush()
    session.refresh(user, ["clinic"])


def create_lot(
    session: Session, actor: Actor, *, kind: str, name: str, lot_number: str, expires_on: date, status: str
) -> ReagentLot:
    """Register a reagent lot (admin); refuses a malformed kind or lot number, a status a lot may not be registered
    with (R-LBK-5: never recalled) and a lot already registered."""
    require(actor, Action.MANAGE_REFERENCE)
    formats.KIND.check("kind", kind)
    formats.LOT_NUMBER.check("lot_number", lot_number)
    status = check_settable_lot_status(lot_number, None, status).value
    if session.execute(
        select(ReagentLot.id).where(ReagentLot.kind == kind, ReagentLot.lot_number == lot_number)
    ).first():
        raise Conflict(f"Reagent lot {lot_number} of kind {kind} already exists.")
    lot = ReagentLot(kind=kind, name=name, lot_number=lot_number, expires_on=expires_on, status=status)
    session.add(lot)
    session.flush()
    _audit(session, actor.username, "reagent_lot_created", str(lot.id), None, _snapshot(lot, LOT_FIELDS))
    return lot


def update_lot(session: Session, actor: Actor, lot_id: int, changes: dict[str, Any]) -> ReagentLot:
    """Change a lot's name, expiry or status (admin); only a recall makes a lot recalled, and a recalled lot's
    status never changes (R-LBK-5)."""
    require(actor, Action.MANAGE_REFERENCE)
    lot = session.get(ReagentLot, lot_id)
    if lot is None:
        raise NotFound(f"No reagent lot {lot_id}.")
    if "status" in changes:
        status = check_settable_lot_status(lot.lot_number, LotStatus(lot.status), changes["status"])
        changes = changes | {"status": status.value}
    return _apply(session, actor, lot, changes, LOT_FIELDS, "reagent_lot_updated", str(lot.id))


def list_lots(session: Session, actor: Actor) -> list[ReagentLot]:
    """Every reagent lot, by kind then expiry."""
    require(actor, Action.READ_MATERIALS)
    return list(session.execute(select(ReagentLot).order_by(ReagentLot.kind, ReagentLot.expires_on)).scalars())


def create_equipment(
    session: Session, actor: Actor, *, code: str, kind: str, name: str, calibration_due_on: date, status: str
) -> Equipment:
    """Register equipment (admin); refuses a malformed code or kind and a code already registered."""
    require(actor, Action.MANAGE_REFERENCE)
    formats.EQUIPMENT_CODE.check("code", code)
    formats.KIND.check("kind", kind)
    if session.execute(select(Equipment.id).where(Equipment.code == code)).first():
        raise Conflict(f"Equipment {code} already exists.")
    item = Equipment(code=code, kind=kind, name=name, calibration_due_on=calibration_due_on, status=status)
    session.add(item)
    session.flush()
    _audit(session, actor.username, "equipment_created", code, None, _snapshot(item, EQUIPMENT_FIELDS))
    return item


def update_equipment(session: Session, actor: Actor, code: str, changes: dict[str, Any]) -> Equipment:
    """Change equipment's name, calibration date or status (admin); 404 for an unknown code."""
    require(actor, Action.MANAGE_REFERENCE)
    item = session.execute(select(Equipment).where(Equipment.code == code)).scalar_one_or_none()
    if item is None:
        raise NotFound(f"No equipment {code!r}.")
    return _apply(session, actor, item, changes, EQUIPMENT_FIELDS, "equipment_updated", code)


def list_equipment(session: Session, actor: Actor) -> list[Equipment]:
    """Every equipment item, by code."""
    require(actor, Action.READ_MATERIALS)
    return list(session.execute(select(Equipment).order_by(Equipment.code)).scalars())


def _apply(
    session: Session, actor: Actor, row: Any, changes: dict[str, Any], fields: tuple[str, ...], type: str, key: str
) -> Any:
    old = _snapshot(row, fields)
    for name, value in changes.items():
        if name in fields and name not in ("code", "lot_number", "kind"):
            setattr(row, name, value)
    session.flush()
    new = _snapshot(row, fields)
    if new != old:
        _audit(session, actor.username, type, key, old, new)
    return row
