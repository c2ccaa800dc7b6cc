"""Corrections (R-COR-1; 21 CFR 11.10(e), EU GMP Annex 11 §8.2): who may correct what, and what follows.

A correction is a new event naming the corrected one; these rules decide whether it may be made: the one
who recorded an entry corrects it, or QA; only a process step's values or a QC result are corrected; the
patient's identifiers never are (a wrong patient is a deviation, not a typo); a reason is given and
something changes. A correction of data the release was judged on, after release, goes to QA.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from labtrack.domain.actors import Actor, Role
from labtrack.domain.errors import Forbidden, ValidationFailed
from labtrack.domain.lifecycle import Status
from labtrack.domain.process import DataField, FieldKind, ProcessDefinition, StepDefinition
from labtrack.domain.qc import ENDOTOXIN, TEXT_TESTS

QC_RESULT = "qc_recorded"
# Data a release was judged on; a correction of it after release goes to QA as a deviation.
RELEASE_INPUTS = frozenset({QC_RESULT, "harvest", "concentration"})
AFTER_RELEASE = frozenset({Status.RELEASED, Status.DISPATCHED, Status.DELIVERED, Status.ADMINISTERED})
# Identity read off the patient is never "corrected".
IDENTITY_FIELDS = frozenset({"patient_mrn", "patient_birth_date"})
# A step whose values a QC limit depends on: the harvest's weight and the final volume set endotoxin's.
LIMIT_INPUTS: Mapping[str, str] = {"harvest": ENDOTOXIN, "concentration": ENDOTOXIN}


def is_correctable(process: ProcessDefinition, event_type: str) -> bool:
    """A QC result or one of the batch's process steps; nothing else is corrected."""
    return event_type == QC_RESULT or process.step(event_type) is not None


def check_corrector(actor: Actor, original_actor_id: int) -> None:
    """The one who recorded an entry corrects it, or QA."""
    if original_actor_id != actor.id and actor.role != Role.QA:
        raise Forbidden("Only the person who recorded an entry, or QA, may correct it.")


def may_correct(actor: Actor, process: ProcessDefinition, event_type: str, original_actor_id: int) -> bool:
    """Whether a correction form for this entry is offered to ``actor`` (``check_correction`` decides)."""
    return is_correctable(process, event_type) and (original_actor_id == actor.id or actor.role == Role.QA)


def check_correction(
    actor: Actor, process: ProcessDefinition, event_type: str, original_actor_id: int, reason: str, data: Mapping
) -> None:
    """May ``actor`` correct this entry with ``data`` for ``reason``? Refusals in the order a person fixes them."""
    check_corrector(actor, original_actor_id)
    if not reason.strip():
        raise ValidationFailed({"reason": ["is required"]})
    if not is_correctable(process, event_type):
        raise ValidationFailed({"event_seq": [f"a {event_type} event cannot be corrected"]})
    if event_type == QC_RESULT and set(data) != {"value"}:
        raise ValidationFailed({"data": ['a QC correction gives the new value: {"value": ...}']})
    if any(name in data for name in IDENTITY_FIELDS):
        raise ValidationFailed({"data": ["patient identifiers cannot be corrected; open a deviation"]})


def correctable_fields(step: StepDefinition | None, test: str | None = None) -> tuple[DataField, ...]:
    """The fields a correction form offers: a step's, but the patient's identifiers; a QC ``test``'s value."""
    if step is not None:
        return tuple(f for f in step.fields if f.name not in IDENTITY_FIELDS)
    kind = FieldKind.TEXT if test in TEXT_TESTS else FieldKind.NUMBER
    return (DataField("value", kind, choices=TEXT_TESTS.get(test or "")),)


def step_changes(current: Mapping[str, Any], new: Mapping[str, Any], asked: Iterable[str]) -> dict[str, Any]:
    """The ``{name: {old, new}}`` of the fields asked for whose value changes; a correction changing nothing is
    refused."""
    changes = {name: {"old": current.get(name), "new": new[name]} for name in asked if current.get(name) != new[name]}
    if not changes:
        raise ValidationFailed({"data": ["changes nothing"]})
    return changes


def check_value_changes(old: float | str, new: float | str) -> None:
    """A QC correction gives another value than the one standing."""
    if new == old:
        raise ValidationFailed({"data.value": ["changes nothing"]})


def needs_review(status: Status, event_type: str) -> bool:
    """After release, a correction of what the release was judged on opens a deviation for QA."""
    return status in AFTER_RELEASE and event_type in RELEASE_INPUTS
