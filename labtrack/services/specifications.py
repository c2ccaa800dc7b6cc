"""Versioned product specifications per tissue source (R-QC-1)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labtrack.domain.process import TissueSource
from labtrack.domain.specifications import default_specification
from labtrack.models import Specification


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
