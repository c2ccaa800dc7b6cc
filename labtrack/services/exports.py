"""CSV exports of the lists (R-EXP-1): every matching row, read by keyset in chunks, one CSV row each.

The lists' own filters and access rules (``batches.filtered``, ``deviations.filtered``,
``qc_filtered``) choose the rows; the export walks them newest first by id, a chunk at a
time, so a ten-year list streams in constant memory instead of being one page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from labtrack.documents.spreadsheet import Column, lines
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.din import Din
from labtrack.models import AdverseReaction, Batch, Clinic, Deviation, QcResult
from labtrack.services import adverse_reactions, batches, deviations, outcomes, paging, scope

CHUNK = 500
T = TypeVar("T")


def keyset(
    session: Session,
    query: Select,
    key: InstrumentedAttribute,
    prepare: Callable[[Session, list[Any]], object] | None = None,
) -> Iterator[Any]:
    """Every row of ``query``, newest ``key`` first, ``CHUNK`` rows per statement; nothing kept between chunks.
    ``prepare`` completes each chunk before it is yielded (one more query per chunk, not per row)."""
    chunk, last = CHUNK, None
    while True:
        page = query if last is None else query.where(key < last)
        rows = list(session.execute(page.order_by(key.desc()).limit(chunk)).unique().scalars())
        if prepare is not None:
            prepare(session, rows)
        yield from rows
        if len(rows) < chunk:
            return
        last = getattr(rows[-1], key.key)
        session.expunge_all()


def _who(user: Any) -> str | None:
    return f"{user.full_name} ({user.username})" if user else None


BATCH_COLUMNS: list[Column[Batch]] = [
    Column("DIN", lambda b: b.din),
    Column("DIN as printed", lambda b: Din(b.din).display),
    Column("Product", lambda b: b.product),
    Column("Tissue source", lambda b: b.tissue_source),
    Column("Status", lambda b: b.status),
    Column("Held", lambda b: b.held),
    Column("Clinic", lambda b: b.clinic.code),
    Column("Patient MRN", lambda b: b.patient.mrn),
    Column("Registered (UTC)", lambda b: b.registered_at),
    Column("Expires (UTC)", lambda b: b.expires_at),
    Column("Released (UTC)", lambda b: b.released_at),
    Column("Conditional release", lambda b: b.conditional_release),
    Column("Custodian", lambda b: _who(b.custodian)),
    Column("Specification version", lambda b: b.specification.version),
]
DEVIATION_COLUMNS: list[Column[Deviation]] = [
    Column("Deviation", lambda d: d.id),
    Column("DIN", lambda d: d.batch.din),
    Column("Kind", lambda d: d.kind),
    Column("Description", lambda d: d.description),
    Column("Status", lambda d: d.status),
    Column("Opened by", lambda d: _who(d.opened_by)),
    Column("Opened (UTC)", lambda d: d.opened_at),
    Column("Decision", lambda d: d.decision),
    Column("Justification", lambda d: d.justification),
    Column("Closed by", lambda d: _who(d.closed_by)),
    Column("Closed (UTC)", lambda d: d.closed_at),
]
QC_COLUMNS: list[Column[QcResult]] = [
    Column("Result", lambda r: r.id),
    Column("DIN", lambda r: r.din),
    Column("Test", lambda r: r.test),
    Column("Value", lambda r: r.value["v"]),
    Column("Unit", lambda r: r.unit),
    Column("Within specification", lambda r: r.within_spec),
    Column("Specification", lambda r: r.limit),
    Column("Method", lambda r: r.method),
    Column("Entered by", lambda r: _who(r.entered_by)),
    Column("Entered (UTC)", lambda r: r.entered_at),
    Column("Verified by", lambda r: _who(r.verified_by)),
    Column("Verified (UTC)", lambda r: r.verified_at),
    Column("Corrected", lambda r: r.corrected),
    Column("Original value", lambda r: r.original_value["v"] if r.original_value else None),
]


ADVERSE_REACTION_COLUMNS: list[Column[AdverseReaction]] = [
    Column("Adverse reaction", lambda r: r.id),
    Column("DIN", lambda r: r.batch.din),
    Column("Category", lambda r: r.category),
    Column("Description", lambda r: r.description),
    Column("Onset (UTC)", lambda r: r.onset_at),
    Column("Received on", lambda r: r.received_on),
    Column("Outcome", lambda r: r.outcome),
    Column("Serious", lambda r: r.serious),
    Column("Reportable", lambda r: r.reportable),
    Column("Report due on", lambda r: r.report_due_on),
    Column("Status", lambda r: r.status),
    Column("Reported by", lambda r: _who(r.reported_by)),
    Column("Related to product", lambda r: r.related_to_product),
    Column("Reported to authority on", lambda r: r.reported_to_authority_on),
    Column("Conclusion", lambda r: r.conclusion),
    Column("Closed by", lambda r: _who(r.closed_by)),
    Column("Closed (UTC)", lambda r: r.closed_at),
]


@dataclass(frozen=True)
class QcFilter:
    din: str | None = None
    test: str | None = None
    within_spec: bool | None = None
    verified: bool | None = None
    clinic: str | None = None


def qc_filtered(session: Session, actor: Actor, filters: QcFilter) -> Select:
    """QC results across batches (lab staff), matching ``filters``, unordered."""
    require(actor, Action.QC_ENTRY)
    query = scope.visible(select(QcResult).join(Batch, Batch.id == QcResult.batch_id), actor, Batch.clinic_id)
    if filters.din:
        query = query.where(QcResult.batch_id == batches.get(session, actor, filters.din).id)
    if filters.clinic:
        query = query.join(Clinic, Clinic.id == Batch.clinic_id).where(Clinic.code == filters.clinic.upper())
    if filters.test:
        query = query.where(QcResult.test == filters.test)
    if filters.within_spec is not None:
        query = query.where(QcResult.within_spec.is_(filters.within_spec))
    if filters.verified is not None:
        query = query.where(
            QcResult.verified_by_id.is_not(None) if filters.verified else QcResult.verified_by_id.is_(None)
        )
    return query


def qc_page(
    session: Session,
    actor: Actor,
    filters: QcFilter,
    *,
    limit: int = paging.LIMIT_DEFAULT,
    after: str | None = None,
) -> paging.Page[QcResult]:
    """QC results, newest first, a keyset page at a time (R-SCL-4), each with its batch's DIN."""
    found = paging.page(
        session, qc_filtered(session, actor, filters), QcResult.id, limit=limit, after=after, unique=True
    )
    _with_dins(session, found.items)
    return found


def _with_dins(session: Session, results: list[QcResult]) -> list[QcResult]:
    ids = {r.batch_id for r in results}
    dins = dict(session.execute(select(Batch.id, Batch.din).where(Batch.id.in_(ids))).all()) if ids else {}
    for result in results:
        result.din = dins[result.batch_id]
    return results


def batches_csv(session: Session, actor: Actor, filters: batches.BatchFilter) -> Iterator[str]:
    """Every batch the list would show with these filters, as CSV lines."""
    return lines(BATCH_COLUMNS, keyset(session, batches.filtered(actor, filters), Batch.id))


def deviations_csv(session: Session, actor: Actor, **filters: Any) -> Iterator[str]:
    """Every deviation the list would show with these filters, as CSV lines."""
    return lines(DEVIATION_COLUMNS, keyset(session, deviations.filtered(session, actor, **filters), Deviation.id))


def qc_csv(session: Session, actor: Actor, filters: QcFilter) -> Iterator[str]:
    """Every QC result the list would show with these filters, as CSV lines."""
    return lines(QC_COLUMNS, keyset(session, qc_filtered(session, actor, filters), QcResult.id, _with_dins))


def adverse_reactions_csv(session: Session, actor: Actor, **filters: Any) -> Iterator[str]:
    """Every adverse reaction the list would show with these filters, as CSV lines."""
    query = adverse_reactions.filtered(session, actor, **filters)
    return lines(ADVERSE_REACTION_COLUMNS, keyset(session, query, AdverseReaction.id))


# The outcomes report's rows (R-OUT-5), one line per batch and visit: the names the JSON gives them.
OUTCOME_COLUMNS: list[Column[dict[str, Any]]] = [
    Column(name, lambda row, name=name: row.get(name))
    for name in (
        "din", "tissue_source", "administered_on", "tnc_total", "viability_pct", "viable_cells", "visit",
        "measured_on", "baseline_per_cm2", "density_per_cm2", "change_per_cm2", "change_pct", "late",
    )
]  # fmt: skip


def outcomes_csv(session: Session, actor: Actor, **filters: Any) -> Iterator[str]:
    """The outcomes report's rows (no statistics: nothing to ask a worker for), as CSV lines."""
    document = outcomes.report(session, actor, **filters)
    return lines(OUTCOME_COLUMNS, (row | visit for row in document["batches"] for visit in row["visits"]))
