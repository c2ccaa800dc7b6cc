"""Quality trends (R-SPC-1..3): I-MR charts per tissue source over released batches, Nelson flags, baselines.

Points are released batches in order of release. Viability and endotoxin are the QC
results (the latest entry per test, corrections applied by the projection); TNC per
mL harvested is the total nucleated count over the harvested volume. A baseline
reset by QA (signed, with its reason) starts the next 20 points afresh; flags are
kept per baseline, so QA is told of each new one once (``record_flags``, run per chart by
``labtrack.jobs.trend_watch``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import rfc8785
from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.domain import spc
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import NotFound, ValidationFailed
from labtrack.domain.hashing import iso_utc
from labtrack.domain.process import TissueSource
from labtrack.domain.signatures import Meaning
from labtrack.domain.spc import Metric
from labtrack.models import Batch, BatchEvent, QcResult, TrendBaseline, TrendFlag
from labtrack.services import outbox, signatures
from labtrack.services.streams import append_admin_event

TREND_TOPIC = "trend.flag"


@dataclass
class Released:
    """A released batch's values that outcomes and trends read."""

    batch_id: int
    din: str
    clinic_id: int
    released_at: datetime
    results: dict[str, float] = field(default_factory=dict)
    harvest_volume_ml: float | None = None


def released_batches(
    session: Session,
    tissue_source: str,
    tests: tuple[str, ...],
    *,
    clinic_id: int | None = None,
    volumes: bool = True,
) -> list[Released]:
    """Released batches of a tissue source in release order, with their numeric QC results and harvest volume."""
    query = select(Batch.id, Batch.din, Batch.clinic_id, Batch.released_at).where(
        Batch.tissue_source == tissue_source, Batch.released_at.is_not(None)
    )
    if clinic_id is not None:
        query = query.where(Batch.clinic_id == clinic_id)
    found = {
        row.id: Released(row.id, row.din, row.clinic_id, row.released_at)
        for row in session.execute(query.order_by(Batch.released_at, Batch.id))
    }
    if not found:
        return []
    ids = select(Batch.id).where(Batch.tissue_source == tissue_source, Batch.released_at.is_not(None))
    results = session.execute(
        select(QcResult.batch_id, QcResult.test, QcResult.value)
        .where(QcResult.batch_id.in_(ids), QcResult.test.in_(tests))
        .order_by(QcResult.id)
    )
    for batch_id, test, value in results:  # a later entry of the same test wins
        if batch_id in found and isinstance(value.get("v"), int | float):
            found[batch_id].results[test] = float(value["v"])
    if not volumes:
        return list(found.values())
    volume_ml = BatchEvent.data["values"]["volume_ml"].as_float()  # read in the database, not the whole event
    harvests = session.execute(
        select(BatchEvent.batch_id, volume_ml).where(BatchEvent.batch_id.in_(ids), BatchEvent.type == "harvest")
    )
    for batch_id, volume in harvests:
        if batch_id in found and volume is not None and volume > 0:
            found[batch_id].harvest_volume_ml = float(volume)
    return list(found.values())


def value_of(batch: Released, metric: Metric) -> float | None:
    """A released batch's value of a chart's metric, or None when it was not measured."""
    if metric == Metric.TNC_PER_ML:
        tnc = batch.results.get("tnc_total")
        return tnc / batch.harvest_volume_ml if tnc is not None and batch.harvest_volume_ml else None
    return batch.results.get(metric.value)


@dataclass
class TrendChart:
    tissue_source: str
    metric: Metric
    points: list[Released]
    chart: spc.Chart
    baseline: TrendBaseline | None

    @property
    def baseline_key(self) -> int:
        return self.baseline.id if self.baseline else 0


def current_baseline(session: Session, tissue_source: str, metric: Metric) -> TrendBaseline | None:
    """The newest baseline QA set for this chart, or None if none was set (the first 20 batches ever are it)."""
    return session.execute(
        select(TrendBaseline)
        .where(TrendBaseline.tissue_source == tissue_source, TrendBaseline.metric == metric.value)
        .order_by(TrendBaseline.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def chart_of(tissue_source: str, metric: str) -> tuple[str, Metric]:
    """The chart a path names; an unknown tissue source or metric is 404."""
    try:
        return TissueSource(tissue_source).value, Metric(metric)
    except ValueError:
        raise NotFound(
            "No such chart: the tissue sources are adipose and bone_marrow, the metrics "
            + ", ".join(m.value for m in Metric)
            + "."
        ) from None


def build(session: Session, tissue_source: str, metric: str) -> TrendChart:
    """The chart of one metric for one tissue source: points, baseline, limits, flags."""
    source, kind = chart_of(tissue_source, metric)
    tests = ("tnc_total",) if kind == Metric.TNC_PER_ML else (kind.value,)
    return _chart(session, source, kind, released_batches(session, source, tests, volumes=kind == Metric.TNC_PER_ML))


def build_all(session: Session, tissue_source: str) -> dict[Metric, TrendChart]:
    """Every chart of one tissue source from one read of its released batches."""
    source = chart_of(tissue_source, Metric.VIABILITY.value)[0]
    found = released_batches(session, source, ("viability_pct", "tnc_total", "endotoxin_eu_per_ml"))
    return {kind: _chart(session, source, kind, found) for kind in Metric}


def _chart(session: Session, source: str, kind: Metric, released: list[Released]) -> TrendChart:
    points = [b for b in released if value_of(b, kind) is not None]
    baseline = current_baseline(session, source, kind)
    start = 0
    if baseline is not None:
        start = next((i for i, b in enumerate(points) if b.released_at >= baseline.starts_at), len(points))
    values = [value_of(b, kind) or 0.0 for b in points]
    return TrendChart(source, kind, points, spc.chart(values, start), baseline)


def trend(session: Session, actor: Actor, tissue_source: str, metric: str) -> dict[str, Any]:
    """R-SPC-3: ``{points: [{din, at, value, flags}], centre, ucl, lcl, mr_ucl}`` (QA)."""
    require(actor, Action.READ_TRENDS)
    return as_document(build(session, tissue_source, metric))


def trends_of(session: Session, actor: Actor, tissue_source: str) -> dict[Metric, dict[str, Any]]:
    """Every chart document of one tissue source (QA's trends page)."""
    require(actor, Action.READ_TRENDS)
    return {kind: as_document(found) for kind, found in build_all(session, tissue_source).items()}


def as_document(found: TrendChart) -> dict[str, Any]:
    """A trend chart as the API and the pages show it: points, limits and flags."""
    limits = found.chart.limits
    return {
        "tissue_source": found.tissue_source,
        "metric": found.metric.value,
        "unit": spc.UNITS[found.metric],
        "baseline_points": spc.BASELINE_POINTS,
        "baseline_from": found.points[found.chart.baseline_start].din
        if found.chart.baseline_start < len(found.points)
        else None,
        "baseline_reason": found.baseline.reason if found.baseline else None,
        "points": [
            {
                "din": b.din,
                "at": b.released_at,
                "value": value,
                "moving_range": found.chart.moving_ranges[i],
                "in_baseline": found.chart.baseline_start <= i < found.chart.baseline_start + spc.BASELINE_POINTS,
                "flags": [rule.value for rule in found.chart.flags[i]],
            }
            for i, (b, value) in enumerate(zip(found.points, found.chart.values, strict=True))
        ],
        "centre": limits.centre if limits else None,
        "ucl": limits.ucl if limits else None,
        "lcl": limits.lcl if limits else None,
        "mr_bar": limits.mr_bar if limits else None,
        "mr_ucl": limits.mr_ucl if limits else None,
    }


def reset_baseline(
    session: Session,
    actor: Actor,
    tissue_source: str,
    metric: str,
    *,
    starts_at: datetime,
    reason: str,
    signature: dict[str, Any],
) -> TrendBaseline:
    """QA restarts a chart's baseline at the first batch released at or after ``starts_at``, signed (R-SPC-1)."""
    require(actor, Action.RESET_TREND_BASELINE)
    source, kind = chart_of(tissue_source, metric)
    if starts_at.tzinfo is None:
        raise ValidationFailed({"starts_at": ["must carry a timezone offset"]})
    if starts_at > utcnow():
        raise ValidationFailed({"starts_at": ["must not be in the future"]})
    reason = reason.strip()
    if not reason:
        raise ValidationFailed({"reason": ["say why the baseline is reset"]})
    statement = {"tissue_source": source, "metric": kind.value, "starts_at": iso_utc(starts_at), "reason": reason}
    record_hash = hashlib.sha256(rfc8785.dumps(statement)).hexdigest()
    manifestation = signatures.sign(session, actor, signature, Meaning.APPROVED, record_hash, None)
    baseline = TrendBaseline(
        tissue_source=source,
        metric=kind.value,
        starts_at=starts_at,
        reason=reason,
        signature=manifestation,
        set_by_id=actor.id,
        set_at=utcnow(),
    )
    session.add(baseline)
    session.flush()
    append_admin_event(
        session,
        actor.username,
        "trend_baseline_reset",
        {"key": f"{source}/{kind.value}", "old": None, "new": statement | {"signature": manifestation}},
    )
    return baseline


# --- the watcher: a QA notification for each new flag (R-SPC-2) -----------------------------------


def record_flags(session: Session, tissue_source: str, metric: Metric) -> list[str]:
    """Record the chart's new Nelson flags and tell QA once per flagged point; the flags, as ``din:metric:rules``."""
    found = build(session, tissue_source, metric.value)
    known = set(
        session.execute(
            select(TrendFlag.batch_id, TrendFlag.rule).where(
                TrendFlag.tissue_source == tissue_source,
                TrendFlag.metric == metric.value,
                TrendFlag.baseline_key == found.baseline_key,
            )
        )
    )
    now, new = utcnow(), []
    for point, value, rules in zip(found.points, found.chart.values, found.chart.flags, strict=True):
        fresh = [rule for rule in rules if (point.batch_id, rule.value) not in known]
        if not fresh:
            continue
        for rule in fresh:
            session.add(
                TrendFlag(
                    tissue_source=tissue_source,
                    metric=metric.value,
                    baseline_key=found.baseline_key,
                    batch_id=point.batch_id,
                    rule=rule.value,
                    value=value,
                    flagged_at=now,
                )
            )
        batch = session.get(Batch, point.batch_id)
        outbox.enqueue(
            session,
            TREND_TOPIC,
            batch,
            {
                "tissue_source": tissue_source,
                "metric": metric.value,
                "value": value,
                "unit": spc.UNITS[metric],
                "rules": [rule.value for rule in fresh],
                "released_at": iso_utc(point.released_at),
            },
        )
        new.append(f"{point.din}:{metric.value}:{','.join(r.value for r in fresh)}")
    session.flush()  # two watchers racing collide on the flag's unique key; the loser's unit re-runs
    return new
