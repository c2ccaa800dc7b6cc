"""Reagent lots and equipment used in a step (R-MAT-1..3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from labtrack.domain.errors import (
    Conflict,
    EquipmentNotUsable,
    ReagentNotUsable,
    ValidationFailed,
)
from labtrack.domain.process import StepDefinition


class LotStatus(StrEnum):
    QUARANTINED = "quarantined"
    RELEASED = "released"
    REJECTED = "rejected"
    RECALLED = "recalled"  # R-LBK-5: refused like a quarantined lot, and for good


# What an admin sets a lot to: only a recall (R-LBK-5, labtrack.services.lookbacks) makes a lot recalled.
SETTABLE_LOT_STATUSES = tuple(status for status in LotStatus if status != LotStatus.RECALLED)


def check_settable_lot_status(
    lot_number: str, current: LotStatus | None, new: str, *, recall_reason: str | None = None
) -> LotStatus:
    """The status ``new`` a lot may be given now (R-LBK-5), from ``current`` (None for a lot being registered).

    A lot is registered or edited to one of ``SETTABLE_LOT_STATUSES``; only a recall, which gives its reason
    (``recall_reason``), makes it recalled, and a recalled lot keeps that status for good.
    """
    try:
        status = LotStatus(new)
    except ValueError:
        raise ValidationFailed({"status": [f"must be one of: {', '.join(SETTABLE_LOT_STATUSES)}"]}) from None
    if current == LotStatus.RECALLED:
        if recall_reason is not None:
            raise Conflict(f"Reagent lot {lot_number} is already recalled.")
        if status != current:
            raise Conflict(f"Reagent lot {lot_number} was recalled; a recall is not undone (R-LBK-5).")
        return status
    if status == LotStatus.RECALLED:
        if recall_reason is None:
            raise ValidationFailed({"status": ["a lot is recalled by its recall, which gives the reason"]})
        if not recall_reason.strip():
            raise ValidationFailed({"reason": ["is required"]})
    return status


class EquipmentStatus(StrEnum):
    IN_SERVICE = "in_service"
    OUT_OF_SERVICE = "out_of_service"
    RETIRED = "retired"


@dataclass(frozen=True)
class Lot:
    id: int
    kind: str
    lot_number: str
    status: LotStatus
    expires_on: date


@dataclass(frozen=True)
class EquipmentState:
    code: str
    kind: str
    status: EquipmentStatus
    calibration_due_on: date


def lot_usable(lot: Lot, on: date) -> str | None:
    """Why a lot cannot be used on ``on``, or None when it can (R-MAT-1)."""
    if lot.status != LotStatus.RELEASED:
        return f"reagent lot {lot.lot_number} is {lot.status.value}, not released"
    if lot.expires_on < on:
        return f"reagent lot {lot.lot_number} expired on {lot.expires_on.isoformat()}"
    return None


def equipment_usable(item: EquipmentState, on: date) -> str | None:
    """Why equipment cannot be used on ``on``, or None when it can (R-MAT-2)."""
    if item.status != EquipmentStatus.IN_SERVICE:
        return f"equipment {item.code} is {item.status.value.replace('_', ' ')}"
    if item.calibration_due_on < on:
        return f"equipment {item.code} calibration was due on {item.calibration_due_on.isoformat()}"
    return None


def check_materials(step: StepDefinition, lots: list[Lot], equipment: list[EquipmentState], on: date) -> None:
    """R-MAT-1..3: every supplied item usable on the step's date, every required kind present."""
    for lot in lots:
        reason = lot_usable(lot, on)
        if reason:
            raise ReagentNotUsable(reason[0].upper() + reason[1:] + ".")
    for item in equipment:
        reason = equipment_usable(item, on)
        if reason:
            raise EquipmentNotUsable(reason[0].upper() + reason[1:] + ".")
    errors: dict[str, list[str]] = {}
    lot_kinds = {lot.kind for lot in lots}
    missing_lots = [k for k in step.reagent_kinds if k not in lot_kinds]
    if missing_lots:
        errors["reagent_lots"] = [f"the {step.name} step needs a reagent lot of kind {k}" for k in missing_lots]
    equipment_kinds = {item.kind for item in equipment}
    missing_eq = [k for k in step.equipment_kinds if k not in equipment_kinds]
    if missing_eq:
        errors["equipment"] = [f"the {step.name} step needs equipment of kind {k}" for k in missing_eq]
    if errors:
        raise ValidationFailed(errors)
