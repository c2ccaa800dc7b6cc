"""The outcomes report (R-OUT-5): per batch and per cohort, for QA (every clinic) and a clinic (its own).

Rows are administered batches of a tissue source with a recorded baseline, chosen by
their administration date (``from``/``to``, inclusive). Each row gives the baseline
hair density, the change at each recorded visit (hairs/cm² and % of baseline) and the
dose: TNC and viable cells (TNC × viability). The cohort statistics are computed in
``labtrack.domain.outcomes`` with scipy.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.domain import outcomes
from labtrack.domain.actors import Action, Actor, clinic_scope, require
from labtrack.domain.followup import BASELINE, VisitStatus
from labtrack.domain.process import TissueSource
from labtrack.models import Batch, FollowUpVisit
from labtrack.services import trends

DOSE_TESTS = ("tnc_total", "viability_pct")
CSV_COLUMNS = (
    "din", "tissue_source", "administered_on", "tnc_total", "viability_pct", "viable_cells",
    "visit", "measured_on", "baseline_per_cm2", "density_per_cm2", "change_per_cm2", "change_pct", "late",
)  # fmt: skip


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
    return {"tissue_source": tissue_source, "from": date_from, "to": date_to, "batches": rows, "cohorts": cohorts}


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
    order = sorted(by_visit, key=lambda name: int(name[1:]) if name[1:].isdigit() else 0)
    return {
        "tissue_source": source,
        "visits": [{"visit": name, **asdict(outcomes.summarise(by_visit[name]))} for name in order],
        "dose_response": {"visit": outcomes.DOSE_VISIT, "x": "viable_cells", "y": "change_pct"}
        | asdict(outcomes.fit_line(dose_x, dose_y)),
        "dose_points": [{"viable_cells": x, "change_pct": y} for x, y in zip(dose_x, dose_y, strict=True)],
    }


def csv_rows(document: dict[str, Any]) -> list[list[Any]]:
    """One line per batch and visit, for ``?format=csv``."""
    lines: list[list[Any]] = [list(CSV_COLUMNS)]
    for row in document["batches"]:
        for visit in row["visits"]:
            merged = row | visit
            lines.append(["" if merged.get(name) is None else merged.get(name) for name in CSV_COLUMNS])
    return lines
