"""The batch state machine: statuses, allowed next actions, custody, expiry (R-SEQ-1, R-SEQ-3, R-CUS-1..3).

``BatchState`` is a plain snapshot of the projection; the functions here decide
whether an action is allowed and what status follows, and raise a DomainError
naming the rule when it is not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from labtrack.domain.actors import Actor, Role
from labtrack.domain.errors import (
    BatchHeld,
    CustodyViolation,
    InvalidTransition,
    ValidationFailed,
)
from labtrack.domain.process import PROCESSES, Performer, StepDefinition, TissueSource


class Status(StrEnum):
    REGISTERED = "registered"
    COLLECTED = "collected"
    IN_TRANSIT = "in_transit"
    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    AWAITING_RELEASE = "awaiting_release"
    RELEASED = "released"
    DISPATCHED = "dispatched"
    DELIVERED = "delivered"
    ADMINISTERED = "administered"
    REJECTED = "rejected"
    EXPIRED = "expired"
    DISCARDED = "discarded"


class ContainerCondition(StrEnum):
    """The container as received (R-CUS-4: damaged opens a deviation)."""

    INTACT = "intact"
    DAMAGED = "damaged"


TERMINAL = frozenset({Status.ADMINISTERED, Status.REJECTED, Status.EXPIRED, Status.DISCARDED})


def side_of(role: Role | str) -> Performer:
    return Performer.CLINIC if Role(role) == Role.CLINIC else Performer.LAB


@dataclass(frozen=True)
class PendingTransfer:
    from_user_id: int
    to_user_id: int
    to_side: Performer
    seal_id: str
    status_before: Status


@dataclass(frozen=True)
class BatchState:
    status: Status
    tissue_source: TissueSource
    clinic_id: int
    steps_done: tuple[str, ...] = ()
    custodian_id: int | None = None
    custodian_side: Performer | None = None
    transfer: PendingTransfer | None = None
    held: bool = False
    expires_at: datetime | None = None
    last_physical_at: datetime | None = None

    @property
    def process(self):
        return PROCESSES[self.tissue_source]

    def next_lab_step(self) -> StepDefinition | None:
        return next((s for s in self.process.lab_steps if s.name not in self.steps_done), None)

    def is_expired(self, now: datetime) -> bool:
        return self.status == Status.EXPIRED or (self.expires_at is not None and now >= self.expires_at)


def allowed_actions(state: BatchState) -> list[str]:
    """The next actions the process allows, whoever may perform them (R-SEQ-1)."""
    if state.status in TERMINAL:
        return []
    if state.transfer is not None:
        return ["receipt"]
    actions: list[str] = []
    match state.status:
        case Status.REGISTERED:
            actions.append("harvest")
        case Status.COLLECTED:
            actions.append("handoff")
        case Status.RECEIVED | Status.PROCESSING:
            nxt = state.next_lab_step()
            if nxt is not None:
                actions.append(nxt.name)
            actions.append("handoff")
        case Status.PROCESSED:
            actions.extend(["qc", "handoff"])
        case Status.AWAITING_RELEASE:
            actions.extend(["release", "handoff"])
        case Status.RELEASED:
            actions.append("handoff")
        case Status.DELIVERED:
            actions.extend(["administration", "handoff"])
    return actions


def _refuse_order(state: BatchState, what: str) -> InvalidTransition:
    allowed = allowed_actions(state)
    shown = ", ".join(allowed) if allowed else "none"
    return InvalidTransition(
        f"{what} is not allowed while the batch is {state.status.value}; allowed next: {shown}.",
        allowed=allowed,
    )


def check_step(state: BatchState, step_name: str, *, now: datetime) -> tuple[StepDefinition, Status]:
    """Decide whether ``step_name`` may be recorded ``now``; return its definition and the next status.

    R-CUS-2 (nothing while in transit), R-SEQ-1 (order, repetition, tissue source),
    R-CUS-3 (custody side), R-DEV-1 (administration refused while held), R-SEQ-3 (nor once expired).
    """
    if state.transfer is not None:
        raise CustodyViolation("A custody hand-off is pending: the recipient must receive the batch first.")
    step = state.process.step(step_name)
    if step is None:
        raise _refuse_order(state, f"Step {step_name!r} (not part of the {state.process.product} process)")
    # R-CUS-3 before R-SEQ-1: when this lab step is next in the process and only custody is missing
    # (the clinic still holds the harvested product), custody is the reason to give.
    if step.performer == Performer.LAB and state.custodian_side == Performer.CLINIC and step == state.next_lab_step():
        raise CustodyViolation("Lab steps need the batch in lab custody: the clinic must hand it off to the lab first.")
    if step_name not in allowed_actions(state):
        raise _refuse_order(state, f"Step {step_name!r}")
    if step.performer == Performer.LAB:
        if state.custodian_side != Performer.LAB:
            raise CustodyViolation("Lab steps need the batch in lab custody.")
        final = state.process.lab_steps[-1].name
        return step, (Status.PROCESSED if step.name == final else Status.PROCESSING)
    if step.name == "harvest":
        return step, Status.COLLECTED
    # administration: at the bedside, in the custody of the batch's clinic (R-CUS-3)
    if state.custodian_side != Performer.CLINIC:
        raise CustodyViolation("Administration needs the batch in the clinic's custody.")
    if state.held:
        raise BatchHeld("The batch is held by an open deviation and cannot be administered.")
    if state.is_expired(now):
        raise InvalidTransition(f"The product expired at {state.expires_at}; it must not be administered.", allowed=[])
    return step, Status.ADMINISTERED


def check_handoff(state: BatchState, actor: Actor, recipient: Actor, *, at: datetime) -> Status:
    """R-CUS-1: only the custodian hands off, to one named active user; returns the new status.

    A hand-off to the clinic at ``at`` is the dispatch: refused while held (R-DEV-1) or once expired (R-SEQ-3).
    """
    check_hand_off_by(state, actor)
    check_recipient(state, actor, recipient)
    to_side = side_of(recipient.role)
    from_side = state.custodian_side
    if from_side == to_side:
        return state.status
    if from_side == Performer.CLINIC and state.status == Status.COLLECTED:
        return Status.IN_TRANSIT
    if from_side == Performer.LAB and state.status == Status.RELEASED:
        if state.held:
            raise BatchHeld("The batch is held by an open deviation and cannot be dispatched.")
        if state.is_expired(at):
            raise InvalidTransition("The batch has expired and cannot be dispatched.", allowed=allowed_actions(state))
        return Status.DISPATCHED
    raise _refuse_order(state, f"A hand-off from {from_side} to {to_side}")


def check_recipient(state: BatchState, actor: Actor, recipient: Actor) -> None:
    """R-CUS-1, R-ACC-2: who may take this batch from ``actor``: someone else, not an admin, of the lab or
    of the batch's own clinic (that the user is active is for the lookup of the user)."""
    if recipient.id == actor.id:
        raise ValidationFailed({"to_username": ["cannot hand a batch off to yourself"]})
    if recipient.role == Role.ADMIN:
        raise ValidationFailed({"to_username": ["admins hold no batch authority and cannot take custody"]})
    if recipient.role == Role.CLINIC and recipient.clinic_id != state.clinic_id:
        raise ValidationFailed({"to_username": ["belongs to another clinic than the batch"]})


def check_hand_off_by(state: BatchState, actor: Actor) -> None:
    """R-CUS-1: a hand-off is possible now and ``actor`` is the one who may make it (whoever the recipient)."""
    if state.status in TERMINAL or state.custodian_id is None:
        raise _refuse_order(state, "A hand-off")
    if state.transfer is not None:
        raise CustodyViolation("A hand-off is already pending for this batch.")
    if state.custodian_id != actor.id:
        raise CustodyViolation("Only the batch's current custodian can hand it off.")


def check_receipt(state: BatchState, actor: Actor) -> Status:
    """R-CUS-1: only the named recipient receives; returns the new status."""
    if state.transfer is None:
        raise _refuse_order(state, "A receipt (no hand-off pending)")
    if state.transfer.to_user_id != actor.id:
        raise CustodyViolation("Only the user named in the hand-off can receive the batch.")
    if state.status in TERMINAL:  # expired or rejected in transit: custody is recorded, the status stays
        return state.status
    match state.transfer.status_before, state.transfer.to_side:
        case Status.COLLECTED, Performer.LAB:
            return Status.RECEIVED
        case Status.RELEASED, Performer.CLINIC:
            return Status.DELIVERED
    return state.transfer.status_before


def state_of(batch: Any) -> BatchState:
    """The snapshot of a batch's projection (the ``batches`` row and its custodian and recipient, read by attribute)."""
    transfer = None
    if batch.transfer_to_id is not None and batch.transfer_to is not None:
        transfer = PendingTransfer(
            from_user_id=batch.transfer_from_id or 0,
            to_user_id=batch.transfer_to_id,
            to_side=side_of(batch.transfer_to.role),
            seal_id=batch.transfer_seal_id or "",
            status_before=Status(batch.transfer_status_before),
        )
    return BatchState(
        status=Status(batch.status),
        tissue_source=TissueSource(batch.tissue_source),
        clinic_id=batch.clinic_id,
        steps_done=tuple(batch.steps_done or ()),
        custodian_id=batch.custodian_id,
        custodian_side=side_of(batch.custodian.role) if batch.custodian else None,
        transfer=transfer,
        held=batch.held,
        expires_at=batch.expires_at,
        last_physical_at=batch.last_physical_at,
    )
