"""Patients: registered by their clinic (or by the lab for a named clinic)."""

from __future__ import annotations

from flask_smorest import Blueprint

from labtrack.api.common import actor, authenticate, read_session, write
from labtrack.api.errors import refusals
from labtrack.api.schemas import (
    PatientCreateSchema,
    PatientPageSchema,
    PatientQueryArgsSchema,
    PatientSchema,
)
from labtrack.services import patients

blp = Blueprint("patients", __name__, description="Patients; identity is checked by MRN and birth date.")
blp.before_request(authenticate)


@blp.post("/patients")
@blp.arguments(PatientCreateSchema)
@blp.response(201, PatientSchema)
@refusals(blp, 403, 409, 413)
def register_patient(body: dict):
    """Register a patient (clinic: own clinic; technician: names the clinic)."""
    return write(lambda s: patients.register(s, actor(), **body), PatientSchema())


@blp.get("/patients")
@blp.arguments(PatientQueryArgsSchema, location="query")
@blp.response(200, PatientPageSchema)
@refusals(blp, 403)
def search_patients(args: dict):
    """Find patients by clinic, exact MRN, or part of a name, an MRN or a birth date (`q`), newest first,
    a keyset page at a time (clinic users: own clinic only)."""
    return patients.search(read_session(), actor(), **args)
