"""Versioned product specifications per tissue source (R-QC-1)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.process import TissueSource
from labtrack.domain.qc import validate_specification
from labtrack.domain.specifications import default_specification
from labtrack.models import Specification
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


def publish(session: Session, actor: Actor, tissue_source: str, body: dict[str, Any]) -> Specification:
    """An admin edit makes a new version; batches keep the version in force at registration (R-QC-1)."""
    require(actor, Action.MANAGE_REFERENCE)
    source = TissueSource(tissue_source)
    body = validate_specification(body)
    previous = current(session, source)
    spec = Specification(tissue_source=source.value, version=previous.version + 1, body=body, created_by=actor.username)
    session.add(spec)
    session.flush()
    append_admin_event(
        session,
        actor.username,
        "specification_published",
        {
            "key": source.value,
            "old": {"version": previous.version, "body": previous.body},
            "new": {"version": spec.version, "body": body},
        },
    )
    return spec
