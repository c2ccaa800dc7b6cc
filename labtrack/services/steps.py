"""Logging process steps with the product in hand (R-COI-1..2, R-SEQ-1..2, R-MAT-1..3, R-CUS-2..3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import lifecycle, timing
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import EquipmentNotUsable, ReagentNotUsable
from labtrack.domain.investigations import Activity
from labtrack.domain.lifecycle import BatchState, check_step
from labtrack.domain.materials import (
    EquipmentState,
    EquipmentStatus,
    Lot,
    LotStatus,
    check_materials,
    equipment_usable,
    lot_usable,
)
from labtrack.domain.process import Performer, StepDefinition, validate_step_data
from labtrack.models import Batch, BatchEvent, Equipment, ReagentLot
from labtrack.services import batches, followups, identity, uses
from labtrack.services.streams import append_batch_event


def in_hand(
    session: Session,
    actor: Actor,
    din: str,
    scanned_din: str | None,
    action: Action | Callable[[BatchState], Action],
    what: str,
) -> tuple[Batch, BatchState]:
    """Load and lock the batch for a write made with the product in hand: access, then the scan."""
    batch = batches.get(session, actor, din, for_update=True)
    state = lifecycle.state_of(batch)
    require(actor, action(state) if callable(action) else action, batch.clinic_id, what="batch")
    identity.check_scan(batch, actor, scanned_din, what)
    return batch, state


def _step_action(step: str) -> Callable[[BatchState], Action]:
    def action(state: BatchState) -> Action:
        definition = state.process.step(step)
        clinic_step = definition is not None and definition.performer == Performer.CLINIC
        return Action.LOG_CLINIC_STEP if clinic_step else Action.LOG_LAB_STEP

    return action


def _materials(session: Session, lot_ids: list[int], codes: list[str]) -> tuple[list[Lot], list[EquipmentState]]:
    """The supplied lots and equipment as the rules see them; an unknown id or code is refused.

    Core queries of the columns the rules read (none when nothing of the kind was supplied).
    """
    lots_c, items_c = ReagentLot.__table__.c, Equipment.__table__.c
    lots = _rows(session, lot_ids, lots_c.id, lots_c.kind, lots_c.lot_number, lots_c.status, lots_c.expires_on)
    missing = sorted(set(lot_ids) - {lot.id for lot in lots})
    if missing:
        raise ReagentNotUsable(f"No reagent lot with id {', '.join(map(str, missing))}.")
    items = _rows(session, codes, items_c.code, items_c.kind, items_c.status, items_c.calibration_due_on)
    unknown = sorted(set(codes) - {item.code for item in items})
    if unknown:
        raise EquipmentNotUsable(f"No equipment with code {', '.join(unknown)}.")
    return [lot_view(row) for row in lots], [equipment_view(row) for row in items]


def _rows(session: Session, keys: list, key: ColumnElement, *columns: ColumnElement) -> list[Row]:
    """The rows whose ``key`` is one of ``keys``, with ``key`` and ``columns``."""
    if not keys:
        return []
    return list(session.connection().execute(select(key, *columns).where(key.in_(keys))))


def lot_view(lot: ReagentLot | Row) -> Lot:
    """A reagent lot as the material rules read it (R-MAT-1)."""
    return Lot(lot.id, lot.kind, lot.lot_number, LotStatus(lot.status), lot.expires_on)


def equipment_view(item: Equipment | Row) -> EquipmentState:
    """Equipment as the material rules read it (R-MAT-2)."""
    return EquipmentState(item.code, item.kind, EquipmentStatus(item.status), item.calibration_due_on)


def materials(
    session: Session, actor: Actor, step: StepDefinition, on: date
) -> tuple[list[tuple[ReagentLot, str | None]], list[tuple[Equipment, str | None]]]:
    """The lots and equipment of a step's required kinds, each with why it cannot be used on ``on``
    (None when it can, R-MAT-1..3). Pickers offer the usable ones and show the others disabled with
    their reason; ``log_step`` checks again."""
    require(actor, Action.READ_MATERIALS)
    lots = session.execute(
        select(ReagentLot)
        .where(ReagentLot.kind.in_(step.reagent_kinds))
        .order_by(ReagentLot.kind, ReagentLot.expires_on)
    ).scalars()
    items = session.execute(
        select(Equipment).where(Equipment.kind.in_(step.equipment_kinds)).order_by(Equipment.kind, Equipment.code)
    ).scalars()
    return (
        [(lot, lot_usable(lot_view(lot), on)) for lot in lots],
        [(item, equipment_usable(equipment_view(item), on)) for item in items],
    )


def log_step(
    session: Session,
    actor: Actor,
    din: str,
    *,
    step: str,
    scanned_din: str | None,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
    late_entry_reason: str | None = None,
    reagent_lots: list[int] | None = None,
    equipment: list[str] | None = None,
) -> BatchEvent:
    """Record one process step as an event and advance the batch's projection."""
    batch, state = in_hand(session, actor, din, scanned_din, _step_action(step), step)
    now = utcnow()
    definition, new_status = check_step(state, step, now=now)
    clean = validate_step_data(definition, data)
    if definition.performer == Performer.CLINIC:  # harvest and administration: R-COI-2, R-COI-3
        identity.check_patient(batch, actor, clean["patient_mrn"], clean["patient_birth_date"], step)
    if step == "harvest":
        timing.check_harvest_window(clean["started_at"], clean["ended_at"], now=now)
        occurred_at = occurred_at or clean["ended_at"]
    occurred_at = occurred_at or now
    timing.check_occurred_at(
        occurred_at, now=now, last_physical_at=state.last_physical_at, late_entry_reason=late_entry_reason
    )
    lots, items = _materials(session, list(dict.fromkeys(reagent_lots or [])), list(dict.fromkeys(equipment or [])))
    check_materials(definition, lots, items, occurred_at.date())
    payload: dict[str, Any] = {"step": step, "scanned_din": scanned_din, "values": clean}
    if lots:
        payload["reagent_lots"] = [{"id": lot.id, "kind": lot.kind, "lot_number": lot.lot_number} for lot in lots]
    if items:
        payload["equipment"] = [{"code": i.code, "kind": i.kind} for i in items]
    if late_entry_reason:
        payload["late_entry_reason"] = late_entry_reason.strip()
    # The projection changes first, so that the event's flush writes them in the same UPDATE as the new head.
    batch.status = new_status.value
    batch.steps_done = [*batch.steps_done, step]
    batch.last_physical_at = occurred_at
    if step == "harvest":
        batch.custodian_id = actor.id
        stability = batch.specification.body.get("stability_hours", 24)
        batch.expires_at = timing.expiry(clean["ended_at"], stability)
    event = append_batch_event(session, batch, actor, step, payload, occurred_at=occurred_at, recorded_at=now)
    uses.record(session, event, Activity.STEP, lot_ids=[x.id for x in lots], equipment_codes=[i.code for i in items])
    if step == "administration":  # R-OUT-2: administration schedules the follow-up visits
        followups.schedule(session, batch, actor, occurred_at)
    return event
