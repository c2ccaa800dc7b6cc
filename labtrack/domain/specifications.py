"""Product specifications, versioned per tissue source (R-QC-1) under change control (R-QC-6), and custody
limits (R-CUS-4)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from labtrack.domain.actors import Action, Actor, can, require
from labtrack.domain.decisions import Decision
from labtrack.domain.deviations import DeviationKind
from labtrack.domain.errors import Conflict, DomainError, Forbidden, ValidationFailed
from labtrack.domain.lifecycle import ContainerCondition
from labtrack.domain.process import TissueSource


def default_specification(tissue_source: TissueSource) -> dict[str, Any]:
    """The defaults of R-QC-1, as stored in version 1 of each tissue source's specification."""
    tnc_minimum = 1.0e7 if tissue_source == TissueSource.ADIPOSE else 1.0e8
    return {
        "stability_hours": 24,
        "transport_temperature_c": {"min": 2, "max": 25},
        "tests": {
            "viability_pct": {"unit": "%", "min": 70},
            "tnc_total": {"unit": "cells", "min": tnc_minimum},
            "gram_stain": {"unit": None, "equals": "no_organisms_seen"},
            "endotoxin_eu_per_ml": {"unit": "EU/mL", "max_eu_per_kg": 5},
            "sterility_culture": {"unit": None, "release": "pending", "final": "no_growth"},
            "cd34_pct": {"unit": "%", "record_only": True},
        },
    }


def transport_range(spec: dict[str, Any]) -> tuple[float, float]:
    limits = spec.get("transport_temperature_c") or {"min": 2, "max": 25}
    return float(limits["min"]), float(limits["max"])


def receipt_deviations(
    *, handoff_seal: str, seal_id: str, condition: str, temperature_c: float, spec: dict[str, Any]
) -> list[tuple[str, str]]:
    """R-CUS-4: the deviations a receipt opens, as (kind, description)."""
    found: list[tuple[str, str]] = []
    if seal_id != handoff_seal:
        found.append(
            (DeviationKind.SEAL_MISMATCH, f"Seal {seal_id!r} at receipt differs from {handoff_seal!r} at hand-off.")
        )
    if condition == ContainerCondition.DAMAGED:
        found.append((DeviationKind.DAMAGED_CONTAINER, "Container received damaged."))
    low, high = transport_range(spec)
    if not low <= temperature_c <= high:
        found.append(
            (
                DeviationKind.TEMPERATURE_EXCURSION,
                f"Received at {temperature_c:g} °C, outside the transport range {low:g}–{high:g} °C.",
            )
        )
    return found


# --- change control (R-QC-6) ----------------------------------------------------------------------


class ProposalStatus(StrEnum):
    PROPOSED = "proposed"  # open: at most one per tissue source
    APPROVED = "approved"  # signed by a second QA user; it became a version
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class ProposalFacts:
    """A proposal under change control (a specification's, a follow-up plan's) as the decisions read it."""

    id: int
    status: ProposalStatus
    proposed_by_id: int
    base_version: int
    version_in_force: int


@dataclass(frozen=True)
class ChangeControl:
    """What is changed under R-QC-6's control: who may propose and who approves."""

    thing: str
    propose: Action
    approve: Action


SPECIFICATION = ChangeControl("specification", Action.PROPOSE_SPECIFICATION, Action.APPROVE_SPECIFICATION)
# R-OUT-1: follow-up plans are versioned like specifications; an admin proposes, QA approves
FOLLOW_UP_PLAN = ChangeControl("follow-up plan", Action.MANAGE_REFERENCE, Action.APPROVE_FOLLOW_UP_PLAN)


def check_proposal(
    actor: Actor, reason: str, open_proposal_id: int | None, control: ChangeControl = SPECIFICATION
) -> None:
    """A proposal is made by whom ``control`` names, with a reason, while none is open for the tissue source."""
    require(actor, control.propose)
    if not reason.strip():
        raise ValidationFailed({"reason": [f"say why the {control.thing} changes"]})
    if open_proposal_id is not None:
        raise Conflict(
            f"Proposal {open_proposal_id} for this tissue source is still open: it is approved or withdrawn first."
        )


def check_approval(actor: Actor, proposal: ProposalFacts, control: ChangeControl = SPECIFICATION) -> None:
    """A QA user other than the proposer approves an open proposal made on the version still in force."""
    require(actor, control.approve)
    _check_open(proposal)
    if proposal.proposed_by_id == actor.id:
        raise Forbidden("Another QA user must approve this proposal: you proposed it.")
    if proposal.base_version != proposal.version_in_force:
        raise Conflict(
            f"The proposal was made on version {proposal.base_version}, but version {proposal.version_in_force} "
            "is now in force: withdraw it and propose again on the version in force."
        )


def check_withdrawal(actor: Actor, proposal: ProposalFacts, reason: str) -> None:
    """The proposer, or a QA user, withdraws an open proposal, saying why."""
    _check_open(proposal)
    if proposal.proposed_by_id != actor.id and not can(actor, Action.APPROVE_SPECIFICATION):
        raise Forbidden("A proposal is withdrawn by the one who proposed it, or by a QA user.")
    if not reason.strip():
        raise ValidationFailed({"reason": ["say why the proposal is withdrawn"]})


def _check_open(proposal: ProposalFacts) -> None:
    if proposal.status != ProposalStatus.PROPOSED:
        raise Conflict(f"Proposal {proposal.id} is already {proposal.status}.")


def decide_proposal(actor: Actor, proposal: ProposalFacts) -> list[Decision]:
    """Approval and withdrawal of one proposal for ``actor``: allowed, or why not and who can instead."""
    found = []
    for action, check, by in (
        ("approve", lambda: check_approval(actor, proposal), "another QA user"),
        ("withdraw", lambda: check_withdrawal(actor, proposal, "reason given on the form"), "the proposer or QA"),
    ):
        try:
            check()
        except DomainError as error:
            mine = action == "approve" and error.code == "forbidden" and proposal.proposed_by_id == actor.id
            if mine:
                found.append(Decision(action, False, "you proposed it.", by, error.code, must="approve it"))
            else:
                found.append(Decision(action, False, error.detail, by, error.code))
        else:
            found.append(Decision(action, True))
    return found
