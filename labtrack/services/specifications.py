"""Versioned product specifications per tissue source (R-QC-1), changed only under control (R-QC-6):
proposed with a reason, approved by a second QA user with a signature, or withdrawn; every step audited
on the admin chain."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.decisions import Decision
from labtrack.domain.errors import NotFound, ValidationFailed
from labtrack.domain.process import TissueSource
from labtrack.domain.qc import validate_specification
from labtrack.domain.signatures import Meaning
from labtrack.domain.specifications import (
    SPECIFICATION,
    ChangeControl,
    ProposalFacts,
    ProposalStatus,
    check_approval,
    check_proposal,
    check_withdrawal,
    decide_proposal,
    default_specification,
)
from labtrack.models import Specification, SpecificationProposal
from labtrack.services import signatures
from labtrack.services.streams import append_admin_event


def current(session: Session, tissue_source: TissueSource | str) -> Specification:
    """The version in force now: the highest one for the tissue source."""
    spec = session.execute(
        select(Specification)
        .where(Specification.tissue_source == TissueSource(tissue_source).value)
        .order_by(Specification.version.desc())
        .limit(1)
    ).scalar_one_or_none()
    if spec is None:
        raise RuntimeError("specifications are not seeded: run `flask --app wsgi labtrack init-db`")
    return spec


def list_current(session: Session) -> list[Specification]:
    """The specification in force for each tissue source."""
    return [current(session, source) for source in TissueSource]


def seed_defaults(session: Session) -> int:
    """Insert version 1 of each tissue source's default specification where none exists."""
    added = 0
    for source in TissueSource:
        count = session.execute(
            select(func.count()).select_from(Specification).where(Specification.tissue_source == source.value)
        ).scalar_one()
        if count == 0:
            session.add(
                Specification(
                    tissue_source=source.value, version=1, body=default_specification(source), created_by="system"
                )
            )
            added += 1
    session.flush()
    return added


def history(session: Session, tissue_source: TissueSource | str) -> list[Specification]:
    """Every version of a tissue source's specification, newest first."""
    return list(
        session.execute(
            select(Specification)
            .where(Specification.tissue_source == TissueSource(tissue_source).value)
            .order_by(Specification.version.desc())
        ).scalars()
    )


def proposals(
    session: Session, actor: Actor, *, status: str | None = None, tissue_source: str | None = None
) -> list[SpecificationProposal]:
    """Specification proposals, newest first (admin and QA)."""
    require(actor, Action.PROPOSE_SPECIFICATION)
    query = select(SpecificationProposal).order_by(SpecificationProposal.id.desc())
    if status is not None:
        query = query.where(SpecificationProposal.status == status)
    if tissue_source is not None:
        query = query.where(SpecificationProposal.tissue_source == TissueSource(tissue_source).value)
    return list(session.execute(query).scalars())


def proposal(session: Session, actor: Actor, proposal_id: int, *, for_update: bool = False) -> SpecificationProposal:
    """A specification proposal by id (admin or QA), locked for update when asked; 404 if there is none."""
    require(actor, Action.PROPOSE_SPECIFICATION)
    query = select(SpecificationProposal).where(SpecificationProposal.id == proposal_id)
    if for_update:
        query = query.with_for_update(of=SpecificationProposal)
    found = session.execute(query).unique().scalar_one_or_none()
    if found is None:
        raise NotFound(f"No specification proposal {proposal_id}.")
    return found


def facts_of(session: Session, found: SpecificationProposal) -> ProposalFacts:
    """A proposal as the change-control rules read it, with the version now in force."""
    in_force = current(session, found.tissue_source).version
    return ProposalFacts(found.id, ProposalStatus(found.status), found.proposed_by_id, found.base_version, in_force)


def propose(
    session: Session, actor: Actor, tissue_source: str, *, body: dict[str, Any], reason: str
) -> SpecificationProposal:
    """R-QC-6: propose a new version (admin or QA) with a reason; its limits are checked against physical
    ranges now, and it takes force only when another QA user approves it."""
    source = TissueSource(tissue_source)
    open_id = session.execute(
        select(SpecificationProposal.id).where(
            SpecificationProposal.tissue_source == source.value,
            SpecificationProposal.status == ProposalStatus.PROPOSED.value,
        )
    ).scalar_one_or_none()
    check_proposal(actor, reason, open_id)
    try:
        body = validate_specification(body)
    except ValidationFailed as error:  # named as the request names them: within its body
        raise ValidationFailed({f"body.{name}": messages for name, messages in (error.errors or {}).items()}) from None
    in_force = current(session, source)
    now = utcnow()
    found = SpecificationProposal(
        tissue_source=source.value,
        base_version=in_force.version,
        body=body,
        reason=reason.strip(),
        status=ProposalStatus.PROPOSED.value,
        proposed_by_id=actor.id,
        proposed_at=now,
        record_hash="",
    )
    session.add(found)
    session.flush()
    event = append_admin_event(
        session,
        actor.username,
        "specification_proposed",
        {
            "key": source.value,
            "proposal_id": found.id,
            "base_version": in_force.version,
            "reason": found.reason,
            "old": {"version": in_force.version, "body": in_force.body},
            "new": {"body": body},
        },
    )
    found.record_hash = event.hash  # what an approval's signature binds (R-SIG-3)
    session.flush()
    return found


def sign_approval(
    session: Session,
    actor: Actor,
    facts: ProposalFacts,
    signature: dict[str, Any],
    record_hash: str,
    control: ChangeControl = SPECIFICATION,
) -> dict[str, Any]:
    """R-QC-6 for anything under change control: the approval rules, then the approver's signature meaning
    `approved` over ``record_hash`` (a wrong password is refused and recorded, R-SIG-1); its manifestation."""
    check_approval(actor, facts, control)
    return signatures.sign(session, actor, signature, Meaning.APPROVED, record_hash, None)


def approve(session: Session, actor: Actor, proposal_id: int, *, signature: dict[str, Any]) -> SpecificationProposal:
    """R-QC-6: a QA user other than the proposer approves with a signature meaning `approved`; the proposal
    becomes the version in force, for batches registered from now on."""
    found = proposal(session, actor, proposal_id, for_update=True)
    signed = sign_approval(session, actor, facts_of(session, found), signature, found.record_hash)
    previous = current(session, found.tissue_source)
    spec = Specification(
        tissue_source=found.tissue_source, version=previous.version + 1, body=found.body, created_by=actor.username
    )
    session.add(spec)
    found.status, found.version, found.signature = ProposalStatus.APPROVED.value, spec.version, signed
    found.decided_by_id, found.decided_at = actor.id, utcnow()
    session.flush()
    append_admin_event(
        session,
        actor.username,
        "specification_approved",
        {
            "key": found.tissue_source,
            "proposal_id": found.id,
            "proposed_by": found.proposed_by.username,
            "reason": found.reason,
            "old": {"version": previous.version, "body": previous.body},
            "new": {"version": spec.version, "body": spec.body},
            "signature": signed,
        },
    )
    session.refresh(found, ["decided_by"])
    return found


def withdraw(session: Session, actor: Actor, proposal_id: int, *, reason: str) -> SpecificationProposal:
    """R-QC-6: the proposer, or a QA user, withdraws an open proposal, saying why; nothing takes force."""
    found = proposal(session, actor, proposal_id, for_update=True)
    check_withdrawal(actor, facts_of(session, found), reason)
    found.status, found.withdrawal_reason = ProposalStatus.WITHDRAWN.value, reason.strip()
    found.decided_by_id, found.decided_at = actor.id, utcnow()
    session.flush()
    append_admin_event(
        session,
        actor.username,
        "specification_withdrawn",
        {"key": found.tissue_source, "proposal_id": found.id, "reason": found.withdrawal_reason},
    )
    session.refresh(found, ["decided_by"])
    return found


def decisions_for(session: Session, actor: Actor, found: SpecificationProposal) -> list[Decision]:
    """Approval and withdrawal of ``found`` for ``actor``, allowed or refused with why."""
    return decide_proposal(actor, facts_of(session, found))
