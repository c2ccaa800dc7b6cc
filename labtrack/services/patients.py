"""Patients, registered by their clinic (or by the lab for a clinic)."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, clinic_scope, require
from labtrack.domain.errors import Conflict, NotFound, ValidationFailed
from labtrack.models import PATIENT_SEARCH_COLUMNS, Patient
from labtrack.services import paging, scope
from labtrack.services.reference import clinic_by_code


def register(
    session: Session,
    actor: Actor,
    *,
    mrn: str,
    family_name: str,
    given_name: str,
    birth_date: date,
    clinic: str | None = None,
) -> Patient:
    """A clinic user registers for their own clinic; a technician names the clinic."""
    require(actor, Action.REGISTER_PATIENT)
    clinic_id = clinic_scope(actor)
    if clinic_id is not None:
        if clinic and clinic_by_code(session, clinic).id != clinic_id:
            raise ValidationFailed({"clinic": ["clinic users register patients for their own clinic only"]})
    else:
        if not clinic:
            raise ValidationFailed({"clinic": ["is required when lab staff register a patient"]})
        clinic_id = clinic_by_code(session, clinic).id
    if birth_date > utcnow().date():
        raise ValidationFailed({"birth_date": ["is in the future"]})
    mrn = mrn.strip()
    if session.execute(select(Patient.id).where(Patient.clinic_id == clinic_id, Patient.mrn == mrn)).first():
        raise Conflict(f"A patient with MRN {mrn} is already registered at this clinic.")
    patient = Patient(
        clinic_id=clinic_id,
        mrn=mrn,
        family_name=family_name.strip(),
        given_name=given_name.strip(),
        birth_date=birth_date,
        created_by_id=actor.id,
    )
    session.add(patient)
    session.flush()
    return patient


def get(session: Session, actor: Actor, patient_id: int) -> Patient:
    """A patient by id; another clinic's patient is 404 (R-ACC-1), a role that may not read patients 403."""
    patient = session.get(Patient, patient_id)
    if patient is None:
        raise NotFound("No such patient.")
    require(actor, Action.READ_PATIENTS, patient.clinic_id, what="patient")
    return patient


def matching(text: str) -> Select[tuple[int]]:
    """Ids of patients matching ``text``: a birth date (YYYY-MM-DD), or part of a name or an MRN."""
    text = text.strip()
    try:
        born = date.fromisoformat(text)
    except ValueError:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        fields = (getattr(Patient, name) for name in PATIENT_SEARCH_COLUMNS)  # ix_patients_search_trgm on PostgreSQL
        return select(Patient.id).where(or_(*(func.lower(f).like(pattern, escape="\\") for f in fields)))
    return select(Patient.id).where(Patient.birth_date == born)


def search(
    session: Session,
    actor: Actor,
    *,
    clinic: str | None = None,
    mrn: str | None = None,
    q: str | None = None,
    limit: int = paging.LIMIT_DEFAULT,
    after: str | None = None,
) -> paging.Page[Patient]:
    """Patients the actor may see, newest first, by exact MRN or by ``q`` (``matching``), a keyset page at a time."""
    require(actor, Action.READ_PATIENTS)
    query = scope.visible(select(Patient), actor, Patient.clinic_id)
    if clinic and clinic_scope(actor) is None:
        query = query.where(Patient.clinic_id == clinic_by_code(session, clinic).id)
    if mrn:
        query = query.where(Patient.mrn == mrn.strip())
    if q and q.strip():
        query = query.where(Patient.id.in_(matching(q)))
    return paging.page(session, query, Patient.id, limit=limit, after=after)
