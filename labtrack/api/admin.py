"""Reference data: clinics, users, reagent lots, equipment, specifications (admin; R-ACC-2)."""

from __future__ import annotations

from flask_smorest import Blueprint

from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import (
    ClinicCreateSchema,
    ClinicSchema,
    EquipmentCreateSchema,
    EquipmentSchema,
    EquipmentUpdateSchema,
    LotCreateSchema,
    LotSchema,
    LotUpdateSchema,
    ProposalQueryArgsSchema,
    SignedSchema,
    SpecificationProposalCreateSchema,
    SpecificationProposalSchema,
    SpecificationSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
    WithdrawalCreateSchema,
)
from labtrack.domain.errors import NotFound
from labtrack.domain.process import TissueSource
from labtrack.services import reference, specifications

blp = Blueprint("reference", __name__, description="Reference data managed by admins; every change is audited.")
blp.before_request(authenticate)


@blp.post("/clinics")
@blp.arguments(ClinicCreateSchema)
@blp.response(201, ClinicSchema)
@refusals(blp, 403, 409, 413)
def create_clinic(body: dict):
    """Add a clinic (admin)."""
    return write(lambda s: reference.create_clinic(s, actor(), **body), ClinicSchema())


@blp.get("/clinics")
@blp.response(200, ClinicSchema(many=True))
@refusals(blp, 403)
def list_clinics():
    """All clinics (admin)."""
    return reference.list_clinics(read_session(), actor())


@blp.post("/users")
@blp.arguments(UserCreateSchema)
@blp.response(201, UserSchema)
@refusals(blp, 403, 409, 413)
def create_user(body: dict):
    """Add a user (admin). Clinic users name their clinic's code."""
    return write(lambda s: reference.create_user(s, actor(), **body), UserSchema())


@blp.get("/users")
@blp.response(200, UserSchema(many=True))
@refusals(blp, 403)
def list_users():
    """All users, active or not (admin)."""
    return reference.list_users(read_session(), actor())


@blp.patch("/users/<string:username>")
@blp.arguments(UserUpdateSchema)
@blp.response(200, UserSchema)
@refusals(blp, 403, 404, 409, 413)
def update_user(body: dict, username: str):
    """Deactivate or reactivate, change a lab role, or unlock (admin). Users are never deleted."""
    return write(lambda s: reference.update_user(s, actor(), username, **body), UserSchema(), status=200)


@blp.post("/reagent-lots")
@blp.arguments(LotCreateSchema)
@blp.response(201, LotSchema)
@refusals(blp, 403, 409, 413)
def create_lot(body: dict):
    """Register a reagent lot (admin)."""
    return write(lambda s: reference.create_lot(s, actor(), **body), LotSchema())


@blp.get("/reagent-lots")
@blp.response(200, LotSchema(many=True))
@refusals(blp, 403)
def list_lots():
    """All reagent lots (lab staff)."""
    return reference.list_lots(read_session(), actor())


@blp.patch("/reagent-lots/<int:lot_id>")
@blp.arguments(LotUpdateSchema)
@blp.response(200, LotSchema)
@refusals(blp, 403, 404, 409, 413)
def update_lot(body: dict, lot_id: int):
    """Release, quarantine or reject a lot, or correct its expiry (admin)."""
    return write(lambda s: reference.update_lot(s, actor(), lot_id, body), LotSchema(), status=200)


@blp.post("/equipment")
@blp.arguments(EquipmentCreateSchema)
@blp.response(201, EquipmentSchema)
@refusals(blp, 403, 409, 413)
def create_equipment(body: dict):
    """Register equipment (admin)."""
    return write(lambda s: reference.create_equipment(s, actor(), **body), EquipmentSchema())


@blp.get("/equipment")
@blp.response(200, EquipmentSchema(many=True))
@refusals(blp, 403)
def list_equipment():
    """All equipment (lab staff)."""
    return reference.list_equipment(read_session(), actor())


@blp.patch("/equipment/<string:code>")
@blp.arguments(EquipmentUpdateSchema)
@blp.response(200, EquipmentSchema)
@refusals(blp, 403, 404, 409, 413)
def update_equipment(body: dict, code: str):
    """Record a calibration or change service status (admin)."""
    return write(lambda s: reference.update_equipment(s, actor(), code, body), EquipmentSchema(), status=200)


@blp.get("/specifications")
@blp.response(200, SpecificationSchema(many=True))
@refusals(blp)
def list_specifications():
    """The specification version in force for each tissue source (any signed-in user)."""
    return specifications.list_current(read_session())


@blp.get("/specifications/<string:tissue_source>/versions")
@blp.response(200, SpecificationSchema(many=True))
@refusals(blp, 404)
def specification_versions(tissue_source: str):
    """Every version of a tissue source's specification, newest first (any signed-in user)."""
    return specifications.history(read_session(), _source(tissue_source))


@blp.post("/specifications/<string:tissue_source>/proposals")
@blp.arguments(SpecificationProposalCreateSchema)
@blp.response(201, SpecificationProposalSchema)
@refusals(blp, 403, 404, 409, 413)
def propose_specification(body: dict, tissue_source: str):
    """Propose a new specification version with a reason (admin or QA); limits are checked against physical
    ranges. It takes force only when another QA user approves it (R-QC-6)."""
    source = _source(tissue_source)
    return write(
        lambda s: specifications.propose(s, actor(), source, body=body["body"], reason=body["reason"]),
        SpecificationProposalSchema(),
    )


@blp.get("/specification-proposals")
@blp.arguments(ProposalQueryArgsSchema, location="query")
@blp.response(200, SpecificationProposalSchema(many=True))
@refusals(blp, 403)
def list_specification_proposals(args: dict):
    """Specification proposals, newest first, open ones with ``status=proposed`` (admin and QA)."""
    return specifications.proposals(read_session(), actor(), **args)


@blp.get("/specification-proposals/<int:proposal_id>")
@blp.response(200, SpecificationProposalSchema)
@refusals(blp, 403, 404, 422)
def get_specification_proposal(proposal_id: int):
    """One specification proposal (admin and QA)."""
    return specifications.proposal(read_session(), actor(), proposal_id)


@blp.post("/specification-proposals/<int:proposal_id>/approve")
@blp.arguments(SignedSchema)
@blp.response(200, SpecificationProposalSchema)
@refusals(blp, 403, 404, 409, 413)
def approve_specification_proposal(body: dict, proposal_id: int):
    """A QA user other than the proposer approves with a signature meaning `approved`; the proposal becomes the
    version in force for batches registered from now on (R-QC-6, R-SIG-1)."""
    return write(
        lambda s: specifications.approve(s, actor(), proposal_id, **body), SpecificationProposalSchema(), status=200
    )


@blp.post("/specification-proposals/<int:proposal_id>/withdraw")
@blp.arguments(WithdrawalCreateSchema)
@blp.response(200, SpecificationProposalSchema)
@refusals(blp, 403, 404, 409, 413)
def withdraw_specification_proposal(body: dict, proposal_id: int):
    """The proposer, or a QA user, withdraws an open proposal with a reason (R-QC-6)."""
    return write(
        lambda s: specifications.withdraw(s, actor(), proposal_id, **body), SpecificationProposalSchema(), status=200
    )


def _source(tissue_source: str) -> str:
    if tissue_source not in {t.value for t in TissueSource}:
        raise NotFound("No such tissue source.")
    return tissue_source
