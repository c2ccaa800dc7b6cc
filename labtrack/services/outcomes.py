"""The outcomes report (R-OUT-5): per batch and per cohort, for QA (every clinic) and a clinic (its own).

Rows are administered batches of a tissue source with a recorded baseline, chosen by
their administration date (``from``/``to``, inclusive). Each row gives the baseline
hair density, the change at each recorded visit (hairs/cm² and % of baseline) and the
dose: TNC and viable cells (TNC × viability).

The cohort statistics are computed with scipy (``labtrack.domain.outcomes``), which the web
process must not load (it would take a worker past 150 MB). So ``report`` gives each cohort
the statistics stored under the key of its inputs (``outcome_statistics``), or marks them
``pending``; ``with_statistics`` asks a Celery worker (``store``, in the task
``labtrack.outcome_statistics``) for the pending ones and waits a few seconds for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.domain import outcomes
from labtrack.domain.actors import Action, Actor, clinic_scope, require
from labtrack.domain.followup import BASELINE, VisitStatus
from labtrack.domain.process import TissueSource
from labtrack.models import Batch, FollowUpVisit, OutcomeStatistics
from labtrack.services import trends

log = logging.getLogger(__name__)

COMPUTED, PENDING = "computed", "pending"
POLL_SECONDS = 0.1
Ask = Callable[[list[outcomes.Inputs]], None]  # hands inputs to a worker (``labtrack.extensions``)

DOSE_TESTS = ("tnc_total", "viability_pct")


def report(
    session: Session,
    actor: Actor,
    *,
    tissue_source: str | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
) -> dict[str, Any]:
    """Rows and statistics for each tissue source asked for (all when none)."""
    require(actor, Action.READ_OUTCOMES)
    clinic_id = clinic_scope(actor)  # R-ACC-1: a clinic sees its own patients
    sources = [TissueSource(tissue_source).value] if tissue_source else [s.value for s in TissueSource]
    rows: list[dict[str, Any]] = []
    cohorts: list[dict[str, Any]] = []
    for source in sources:
        found = _rows(session, source, clinic_id, date_from, date_to)
        rows += found
        cohorts.append(_cohort(source, found))
    document = {"tissue_source": tissue_source, "from": date_from, "to": date_to, "batches": rows, "cohorts": cohorts}
    fill(session, document)
    return document


def with_statistics(
    reader: Callable[[], Session], actor: Actor, ask: Ask, wait_seconds: float, **filters: Any
) -> dict[str, Any]:
    """``report``, with the pending statistics asked of a worker and waited for up to ``wait_seconds``; each
    read in a session of its own from ``reader`` (the Database's ``reader``).

    Whatever has not come by then stays ``pending`` (the page says so and reloads); a broker
    that cannot take the request is logged and leaves them pending too.
    """
    with reader() as session:
        document = report(session, actor, **filters)
    missing = pending(document)
    if not missing:
        return document
    try:
        ask([cohort["inputs"] for cohort in missing])
    except Exception as error:  # any broker failure: the report is still worth its rows
        log.warning("outcome statistics: broker unavailable (%s); they stay pending", error)
        return document
    deadline = time.monotonic() + wait_seconds
    while pending(document) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        with reader() as session:  # a fresh snapshot each time: the worker's commit shows
            fill(session, document)
    return document


def pending(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's cohorts whose statistics are not stored yet."""
    return [cohort for cohort in document["cohorts"] if cohort["statistics"] == PENDING]


def fill(session: Session, document: dict[str, Any]) -> None:
    """Put the stored statistics (or those of an empty cohort) into each pending cohort of ``document``."""
    waiting = {cohort["key"]: cohort for cohort in pending(document)}
    found = {
        row.key: row.result
        for row in session.execute(select(OutcomeStatistics).where(OutcomeStatistics.key.in_(waiting))).scalars()
    } if waiting else {}  # fmt: skip
    for name, cohort in waiting.items():
        result = found.get(name) or outcomes.empty(cohort["inputs"])
        if result is not None:
            cohort["visits"] = result["visits"]
            cohort["dose_response"] = cohort["dose_response"] | result["dose_response"]
            cohort["statistics"] = COMPUTED


def store(session: Session, values: outcomes.Inputs) -> str:
    """Compute (scipy) and keep one cohort's statistics, unless they are kept already: for the worker's task."""
    name = outcomes.key(values)
    if session.get(OutcomeStatistics, name) is None:
        session.add(OutcomeStatistics(key=name, result=outcomes.statistics(values)))
        session.flush()
    return name


def _rows(
    session: Session, source: str, clinic_id: int | None, date_from: date | None, date_to: date | None
) -> list[dict[str, Any]]:
    doses = {b.batch_id: b for b in trends.released_batches(session, source, DOSE_TESTS, clinic_id=clinic_id)}
    query = (
        select(FollowUpVisit, Batch.din, Batch.last_physical_at)
        .join(Batch, Batch.id == FollowUpVisit.batch_id)
        .where(Batch.tissue_source == source, FollowUpVisit.status == VisitStatus.DONE.value)
    )
    if clinic_id is not None:
        query = query.where(Batch.clinic_id == clinic_id)
    per_batch: dict[int, dict[str, Any]] = {}
    for visit, din, administered_at in session.execute(query.order_by(Batch.id, FollowUpVisit.due_on)):
        administered_on = administered_at.date() if administered_at else None
        if (
            administered_on is None
            or (date_from and administered_on < date_from)
            or (date_to and administered_on > date_to)
        ):
            continue
        entry = per_batch.setdefault(
            visit.batch_id, {"din": din, "tissue_source": source, "administered_on": administered_on, "visits": {}}
        )
        entry["visits"][visit.visit] = visit
    rows = []
    for batch_id, entry in per_batch.items():
        baseline = entry["visits"].get(BASELINE)
        if baseline is None:
            continue  # nothing to compare with
        dose = doses.get(batch_id)
        tnc = dose.results.get("tnc_total") if dose else None
        viability = dose.results.get("viability_pct") if dose else None
        base = float(baseline.measurement["hair_density_per_cm2"])
        visits = []
        for name, visit in entry["visits"].items():
            if name == BASELINE:
                continue
            density = float(visit.measurement["hair_density_per_cm2"])
            change = outcomes.change(base, density)
            visits.append(
                {
                    "visit": name,
                    "measured_on": visit.measured_on,
                    "density_per_cm2": density,
                    "change_per_cm2": change.absolute,
                    "change_pct": change.percent,
                    "late": visit.late,
                }
            )
        rows.append(
            {
                "din": entry["din"],
                "tissue_source": source,
                "administered_on": entry["administered_on"],
                "baseline_per_cm2": base,
                "baseline_measured_on": baseline.measured_on,
                "tnc_total": tnc,
                "viability_pct": viability,
                "viable_cells": outcomes.viable_cells(tnc, viability),
                "visits": visits,
            }
        )
    return rows


def _cohort(source: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_visit: dict[str, list[float]] = {}
    dose_x: list[float] = []
    dose_y: list[float] = []
    for row in rows:
        for visit in row["visits"]:
            if visit["change_pct"] is not None:
                by_visit.setdefault(visit["visit"], []).append(visit["change_pct"])
                if visit["visit"] == outcomes.DOSE_VISIT and row["viable_cells"] is not None:
                    dose_x.append(row["viable_cells"])
                    dose_y.append(visit["change_pct"])
    values = outcomes.inputs(by_visit, dose_x, dose_y)
    return {
        "tissue_source": source,
        "statistics": PENDING,
        "key": outcomes.key(values),
        "inputs": values,
        # until the statistics come: each visit's n, and the dose pairs' n, with nothing computed
        "visits": [
            asdict(outcomes.Summary(len(found), None, None, None, None)) | {"visit": name}
            for name, found in values["visits"].items()
        ],
        "dose_response": {"visit": outcomes.DOSE_VISIT, "x": "viable_cells", "y": "change_pct"}
        | asdict(outcomes.Fit(len(dose_x), None, None, None, None, None, None)),
        "dose_points": [{"viable_cells": x, "change_pct": y} for x, y in zip(dose_x, dose_y, strict=True)],
    }
