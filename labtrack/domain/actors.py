"""Who is acting, and what each role may do (R-ACC-1..3).

Permissions are decided here, from the actor alone and the clinic that owns the
thing acted on, so they are testable without requests or a database.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from labtrack.domain.errors import Forbidden, NotFound


class Role(StrEnum):
    TECHNICIAN = "technician"
    QA = "qa"
    CLINIC = "clinic"
    ADMIN = "admin"


class AuthEventKind(StrEnum):
    """What an authentication event records (``auth_events``, R-SIG-1)."""

    SIGN_IN = "sign_in"
    SIGN_OUT = "sign_out"
    LOCKOUT = "lockout"


class AuthOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True)
class Actor:
    id: int
    username: str
    full_name: str
    role: Role
    clinic_id: int | None


class Action(StrEnum):
    MANAGE_REFERENCE = "manage_reference"  # users, clinics, lots, equipment, specifications
    READ_MATERIALS = "read_materials"
    READ_PATIENTS = "read_patients"
    REGISTER_PATIENT = "register_patient"
    REGISTER_BATCH = "register_batch"
    READ_BATCH = "read_batch"
    LOG_CLINIC_STEP = "log_clinic_step"  # harvest, administration
    LOG_LAB_STEP = "log_lab_step"  # digestion, isolation, separation, concentration
    CUSTODY = "custody"  # hand-off and receipt
    OPEN_DEVIATION = "open_deviation"
    LIST_DEVIATIONS = "list_deviations"
    QC_ENTRY = "qc_entry"
    QC_VERIFY = "qc_verify"
    DISPOSITION = "disposition"
    RELEASE = "release"  # and reject
    CORRECT = "correct"
    PRINT_LABEL = "print_label"
    READ_RECORD = "read_record"  # the batch record PDF and the audit export
    AUDIT = "audit"
    PROPOSE_SPECIFICATION = "propose_specification"  # R-QC-6: admin or QA proposes, with a reason
    APPROVE_SPECIFICATION = "approve_specification"  # R-QC-6: another QA user approves, signed
    RECORD_FOLLOW_UP = "record_follow_up"  # follow-up visits and their photos (R-OUT-2, R-OUT-3)
    READ_OUTCOMES = "read_outcomes"  # the outcomes report (R-OUT-5; a clinic: its own patients)
    READ_TRENDS = "read_trends"  # SPC charts (R-SPC-1..3)
    RESET_TREND_BASELINE = "reset_trend_baseline"
    APPROVE_FOLLOW_UP_PLAN = "approve_follow_up_plan"
    REPORT_REACTION = "report_reaction"  # R-ADV-1: the batch's clinic, or QA
    READ_INVESTIGATIONS = "read_investigations"  # reactions and lookbacks (clinics: their own)
    INVESTIGATE = "investigate"  # R-ADV-3, R-LBK-1, R-LBK-4: QA opens lookbacks and closes both
    ACKNOWLEDGE_LOOKBACK = "acknowledge_lookback"  # R-LBK-3: a clinic, for its own batches


_ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(
        {
            Action.MANAGE_REFERENCE,
            Action.READ_MATERIALS,
            Action.AUDIT,
            Action.READ_BATCH,
            Action.PROPOSE_SPECIFICATION,
        }
    ),
    Role.TECHNICIAN: frozenset(
        {
            Action.READ_MATERIALS,
            Action.READ_PATIENTS,
            Action.REGISTER_PATIENT,
            Action.REGISTER_BATCH,
            Action.READ_BATCH,
            Action.LOG_LAB_STEP,
            Action.CUSTODY,
            Action.OPEN_DEVIATION,
            Action.LIST_DEVIATIONS,
            Action.QC_ENTRY,
            Action.QC_VERIFY,
            Action.CORRECT,
            Action.PRINT_LABEL,
            Action.READ_RECORD,
        }
    ),
    Role.QA: frozenset(
        {
            Action.READ_MATERIALS,
            Action.READ_PATIENTS,
            Action.READ_BATCH,
            Action.CUSTODY,
            Action.OPEN_DEVIATION,
            Action.LIST_DEVIATIONS,
            Action.QC_ENTRY,
            Action.QC_VERIFY,
            Action.DISPOSITION,
            Action.RELEASE,
            Action.CORRECT,
            Action.PRINT_LABEL,
            Action.READ_RECORD,
            Action.AUDIT,
            Action.PROPOSE_SPECIFICATION,
            Action.APPROVE_SPECIFICATION,
            Action.READ_OUTCOMES,
            Action.READ_TRENDS,
            Action.RESET_TREND_BASELINE,
            Action.APPROVE_FOLLOW_UP_PLAN,
            Action.REPORT_REACTION,
            Action.READ_INVESTIGATIONS,
            Action.INVESTIGATE,
        }
    ),
    Role.CLINIC: frozenset(
        {
            Action.READ_PATIENTS,
            Action.REGISTER_PATIENT,
            Action.REGISTER_BATCH,
            Action.READ_BATCH,
            Action.LOG_CLINIC_STEP,
            Action.CUSTODY,
            Action.OPEN_DEVIATION,
            Action.CORRECT,
            Action.PRINT_LABEL,
            Action.READ_RECORD,
            Action.RECORD_FOLLOW_UP,
            Action.READ_OUTCOMES,
            Action.REPORT_REACTION,
            Action.READ_INVESTIGATIONS,
            Action.ACKNOWLEDGE_LOOKBACK,
        }
    ),
}


def clinic_scope(actor: Actor) -> int | None:
    """R-ACC-1: the one clinic whose patients and batches ``actor`` is confined to; None for lab users, who see
    every clinic. Lists and searches ask it through ``services/scope.py``, single things through ``sees_clinic``."""
    return actor.clinic_id if actor.role == Role.CLINIC else None


def sees_clinic(actor: Actor, clinic_id: int) -> bool:
    """R-ACC-1: clinic users see only their own clinic; lab users see every clinic."""
    scope = clinic_scope(actor)
    return scope is None or scope == clinic_id


def can(actor: Actor, action: Action, clinic_id: int | None = None) -> bool:
    if action not in _ROLE_ACTIONS[actor.role]:
        return False
    return clinic_id is None or sees_clinic(actor, clinic_id)


def require(actor: Actor, action: Action, clinic_id: int | None = None, *, what: str = "resource") -> None:
    """Refuse with 404 when the thing belongs to another clinic (R-ACC-1), else 403."""
    if clinic_id is not None and not sees_clinic(actor, clinic_id):
        raise NotFound(f"No such {what}.")
    if not can(actor, action):
        raise Forbidden(f"The {actor.role} role may not {action.value.replace('_', ' ')}.")
