"""The relational record of what each batch event used: reagent lots, equipment, operators (R-LBK-1).

Written by the step, QC entry and QC verification services in their own transaction, one
multi-row INSERT per event, so a lookback is an index lookup and never reads event JSON.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import insert
from sqlalchemy.orm import Session

from labtrack.domain.investigations import Activity
from labtrack.models import BatchEvent, BatchUse


def record(
    session: Session,
    event: BatchEvent,
    activity: Activity,
    *,
    lot_ids: Iterable[int] = (),
    equipment_codes: Iterable[str] = (),
) -> None:
    """Record that ``event`` was done by its actor, with these lots and equipment."""
    base = {
        "batch_id": event.batch_id,
        "seq": event.seq,
        "event_type": event.type,
        "activity": activity.value,
        "occurred_at": event.occurred_at,
        "reagent_lot_id": None,
        "equipment_code": None,
        "user_id": None,
    }
    rows = [base | {"user_id": event.actor_id}]
    rows += [base | {"reagent_lot_id": lot_id} for lot_id in lot_ids]
    rows += [base | {"equipment_code": code} for code in equipment_codes]
    # One statement with a VALUES row per use: the ORM's bulk insert would group the rows by which
    # columns are set (the operator, a lot, a piece of equipment) and send one INSERT per group.
    session.execute(insert(BatchUse.__table__).values(rows))
