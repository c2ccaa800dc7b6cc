"""Temperature-logger import per transport leg (R-TMP-1): stored once, summarised, excursions opened.

The import is a fact about the batch: a ``temperature_log`` event on its chain carries the
file's SHA-256, its time zone and the leg's summary; the readings themselves are kept in
``temperature_logs`` (append-only) for the curve. The same file twice, or a second file
for a leg, is 409; a file that cannot be read is 422 naming the line; nothing is stored
for a refused import.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.documents.curve import Curve, curve, svg
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.deviations import DeviationKind
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.specifications import transport_range
from labtrack.domain.temperature import MAX_BYTES, Leg, LoggerFileTooLarge, legs, read_file, summarise_leg, zone_of
from labtrack.models import Batch, BatchEvent, TemperatureLog
from labtrack.services import batches, deviations
from labtrack.services.streams import append_batch_event


class LegOpen(Conflict):
    code, title = "leg_open", "Leg not received yet"


class AlreadyImported(Conflict):
    code, title = "already_imported", "Already imported"


@dataclass(frozen=True)
class Upload:
    content: bytes
    filename: str
    timezone: str


def upload_of(file: Any, timezone: str) -> Upload:
    """An uploaded file (werkzeug FileStorage) read to at most 5 MB, its name kept printable."""
    content = file.read(MAX_BYTES + 1)
    if len(content) > MAX_BYTES:
        raise LoggerFileTooLarge("The logger file is larger than 5 MB; nothing was stored.")
    name = PurePath((file.filename or "").replace("\\", "/")).name
    name = "".join(char for char in name if char.isprintable())[:255] or "logger.csv"
    return Upload(content, name, timezone)


def batch_legs(session: Session, batch: Batch) -> list[Leg]:
    """The batch's transport legs, numbered from 1 in the order of its hand-offs."""
    rows = session.execute(
        select(BatchEvent.seq, BatchEvent.type, BatchEvent.occurred_at)
        .where(BatchEvent.batch_id == batch.id, BatchEvent.type.in_(("handoff", "receipt")))
        .order_by(BatchEvent.seq)
    )
    return legs([tuple(row) for row in rows])


def _leg(session: Session, batch: Batch, number: int) -> Leg:
    found = batch_legs(session, batch)
    leg = next((leg for leg in found if leg.number == number), None)
    if leg is None:
        raise NotFound(f"No leg {number}: the batch has {len(found)} hand-off(s) so far.")
    if leg.received_at is None:
        raise LegOpen(f"Leg {number} has not been received yet: import the logger file after the receipt.")
    return leg


def import_log(
    session: Session, actor: Actor, din: str, number: int, upload: Upload, *, allowed_minutes: float
) -> TemperatureLog:
    """Import a leg's logger CSV; an excursion beyond ``allowed_minutes`` opens a temperature_excursion deviation."""
    require(actor, Action.CUSTODY)
    batch = batches.get(session, actor, din, for_update=True)
    zone = zone_of(upload.timezone)
    leg = _leg(session, batch, number)
    digest = hashlib.sha256(upload.content).hexdigest()
    existing = session.execute(
        select(TemperatureLog.leg, TemperatureLog.file_sha256).where(
            TemperatureLog.batch_id == batch.id, (TemperatureLog.leg == number) | (TemperatureLog.file_sha256 == digest)
        )
    ).first()
    if existing is not None:
        same_file = existing.file_sha256 == digest
        raise AlreadyImported(
            f"This file (SHA-256 {digest[:12]}…) was already imported for leg {existing.leg}."
            if same_file
            else f"Leg {number} already has a logger file; a record is never replaced."
        )
    readings = read_file(upload.content, zone)
    low, high = transport_range(batch.specification.body)
    summary = summarise_leg(readings, leg, low, high)
    assert leg.received_at is not None
    data = {
        "leg": number,
        "handoff_seq": leg.handoff_seq,
        "receipt_seq": leg.receipt_seq,
        "file_sha256": digest,
        "filename": upload.filename,
        "timezone": zone.key,
        "readings": len(summary.readings),
        "min_c": summary.minimum,
        "max_c": summary.maximum,
        "mean_c": summary.mean,
        "minutes_out_of_range": summary.minutes_out_of_range,
        "range_c": [low, high],
    }
    event = append_batch_event(session, batch, actor, "temperature_log", data)
    log = TemperatureLog(
        batch_id=batch.id,
        leg=number,
        file_sha256=digest,
        filename=upload.filename,
        timezone=zone.key,
        imported_by_id=actor.id,
        imported_at=utcnow(),
        event_seq=event.seq,
        started_at=leg.handed_off_at,
        ended_at=leg.received_at,
        low_c=low,
        high_c=high,
        min_c=summary.minimum,
        max_c=summary.maximum,
        mean_c=summary.mean,
        minutes_out_of_range=summary.minutes_out_of_range,
        readings=[[round((r.at - leg.handed_off_at).total_seconds()), r.celsius] for r in summary.readings],
    )
    session.add(log)
    log.din, log.excursion = batch.din, summary.excursion(allowed_minutes)
    if log.excursion:
        deviations.open_on(
            session,
            batch,
            actor,
            DeviationKind.TEMPERATURE_EXCURSION,
            f"Leg {number} (hand-off seq {leg.handoff_seq} to receipt seq {leg.receipt_seq}): "
            f"{summary.minutes_out_of_range:g} min outside {low:g}–{high:g} °C "
            f"(min {summary.minimum:g} °C, max {summary.maximum:g} °C), logger file {upload.filename}.",
        )
    session.flush()
    session.refresh(log, ["imported_by"])
    return log


@dataclass(frozen=True)
class LegView:
    """A transport leg as the card and the record show it: its times, its logger file if imported, the curve."""

    number: int
    handed_off_at: datetime
    received_at: datetime | None
    log: TemperatureLog | None
    curve: Curve | None

    @property
    def svg(self) -> str:
        if self.curve is None or self.log is None:
            return ""
        return svg(self.curve, f"Leg {self.number}: {self.log.min_c:g} to {self.log.max_c:g} °C")


def leg_views(session: Session, batch: Batch) -> list[LegView]:
    """Every leg of the batch, with its logger file's summary and curve where one was imported."""
    logs = {log.leg: log for log in for_batch(session, batch.id)}
    views = []
    for leg in batch_legs(session, batch):
        log = logs.get(leg.number)
        shape = (
            curve(log.readings, log.low_c, log.high_c, (log.ended_at - log.started_at).total_seconds()) if log else None
        )
        views.append(LegView(leg.number, leg.handed_off_at, leg.received_at, log, shape))
    return views


def for_batch(session: Session, batch_id: int) -> list[TemperatureLog]:
    """The batch's imported temperature-logger records, by transport leg."""
    return list(
        session.execute(
            select(TemperatureLog).where(TemperatureLog.batch_id == batch_id).order_by(TemperatureLog.leg)
        ).scalars()
    )
