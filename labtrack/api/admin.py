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
    SpecificationSchema,
    SpecificationUpdateSchema,
    UserCreateSchema,
    UserSchema,
    UserUpdateSchema,
)
from labtrack.domain.errors import NotFound
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


@blp.put("/specifications/<string:tissue_source>")
@blp.arguments(SpecificationUpdateSchema)
@blp.response(200, SpecificationSchema)
@refusals(blp, 403, 404, 409, 413)
def publish_specification(body: dict, tissue_source: str):
    """Publish a new specification version for a tissue source (admin); batches keep theirs (R-QC-1)."""
    if tissue_source not in ("adipose", "bone_marrow"):
        raise NotFound("No such tissue source.")
    return write(lambda s: specifications.publish(s, actor(), tissue_source, body), SpecificationSchema(), status=200)
