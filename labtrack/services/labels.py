"""Labels sent to a thermal printer (R-ZPL-1): a print job per request, sent by a worker task.

``request_print`` checks, in the request's unit of work, that the label may be printed
now (the same rules as the PDF label), writes a ``queued`` job naming the printer, and
asks a worker to send it once the request has committed. ``send_job`` (the task) claims
the job, renders the label again, sends it over raw TCP and, only if the printer took
it, appends the ``label_printed`` event. A printer that does not answer fails the job
with the reason, and no event is appended. A job is sent at most once: a task delivered
twice finds the job claimed and sends nothing, since two labels for one product are a
hazard and a missing one is visible; a job not sent within ``STALE_AFTER`` fails
instead of printing long after someone asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import Database, after_commit
from labtrack.documents import printer
from labtrack.documents.zpl import render_zpl
from labtrack.domain.actors import Actor
from labtrack.domain.errors import Conflict, DomainError, NotFound
from labtrack.models import Batch, LabelPrint, User
from labtrack.services import batches, documents
from labtrack.services.auth import actor_of
from labtrack.services.streams import append_batch_event

log = logging.getLogger(__name__)
TASK_PRINT_LABEL = "labtrack.labels.print"
STALE_AFTER = timedelta(minutes=5)


class PrinterNotConfigured(Conflict):
    code, title = "printer_not_configured", "No label printer"


@dataclass(frozen=True)
class LabelSettings:
    facility: str
    zone: str
    printer: str | None

    @classmethod
    def of(cls, config: dict) -> LabelSettings:
        return cls(config["LABTRACK_FIN"], config["LABTRACK_TIMEZONE"], config.get("LABTRACK_LABEL_PRINTER"))


def request_print(
    session: Session, actor: Actor, din: str, *, kind: str, settings: LabelSettings, send: Callable[[int], None]
) -> LabelPrint:
    """Queue a label for the configured printer, if ``actor`` may print it now; ``send(job_id)`` (asking the
    broker for the print task, ``labtrack.extensions.send_label_print``) runs after commit."""
    batch = batches.get(session, actor, din, for_update=True)
    documents.label_view(batch, actor, kind=kind, facility=settings.facility, zone=settings.zone)
    if not settings.printer:
        raise PrinterNotConfigured(
            "No label printer is configured (LABTRACK_LABEL_PRINTER=host:port); download the label instead."
        )
    job = LabelPrint(
        batch_id=batch.id, kind=kind, printer=settings.printer, status="queued", requested_by_id=actor.id,
        requested_at=utcnow(),
    )  # fmt: skip
    session.add(job)
    session.flush()
    job_id = job.id
    after_commit(session, lambda: send(job_id))
    job.din = batch.din
    return job


def get_job(session: Session, actor: Actor, din: str, job_id: int) -> LabelPrint:
    """One print job of a batch the actor may see."""
    batch = batches.get(session, actor, din)
    job = session.execute(
        select(LabelPrint).where(LabelPrint.id == job_id, LabelPrint.batch_id == batch.id)
    ).scalar_one_or_none()
    if job is None:
        raise NotFound("No such print job.")
    job.din = batch.din
    return job


def recent_jobs(session: Session, batch_id: int, limit: int = 5) -> list[LabelPrint]:
    """The batch's newest label print jobs, newest first (at most ``limit``)."""
    return list(
        session.execute(
            select(LabelPrint).where(LabelPrint.batch_id == batch_id).order_by(LabelPrint.id.desc()).limit(limit)
        ).scalars()
    )


def _claim(session: Session, job_id: int) -> bool:
    claimed = session.execute(
        update(LabelPrint).where(LabelPrint.id == job_id, LabelPrint.status == "queued").values(status="sending")
    )
    return claimed.rowcount == 1


def _fail(database: Database, job_id: int, reason: str) -> None:
    def work(session: Session) -> None:
        session.execute(
            update(LabelPrint)
            .where(LabelPrint.id == job_id, LabelPrint.status.in_(("queued", "sending")))
            .values(status="failed", error=reason, finished_at=utcnow())
        )

    database.write(work)
    log.warning("label print %s failed: %s", job_id, reason)


def send_job(database: Database, job_id: int, settings: LabelSettings) -> str:
    """The worker's part: claim, render, send over TCP, then record the print (or the failure)."""

    def claim(session: Session) -> tuple[str, str, bytes] | str:
        job = session.get(LabelPrint, job_id)
        if job is None:
            return "missing"
        if not _claim(session, job_id):
            return job.status
        if utcnow() - job.requested_at > STALE_AFTER:
            raise _Stale(f"not sent: no worker took it within {int(STALE_AFTER.total_seconds() // 60)} minutes")
        who = actor_of(session.get(User, job.requested_by_id))
        batch = batches.get(session, who, _din_of(session, job))
        view = documents.label_view(batch, who, kind=job.kind, facility=settings.facility, zone=settings.zone)
        return job.printer, batch.din, render_zpl(view).encode("ascii")

    try:
        claimed = database.write(claim)
    except _Stale as stale:
        _fail(database, job_id, str(stale))
        return "failed"
    except DomainError as refused:  # the batch moved on since the request (e.g. it left the clinic)
        _fail(database, job_id, f"not sent: {refused.detail}")
        return "failed"
    if isinstance(claimed, str):
        log.info("label print %s: already %s, not sent again", job_id, claimed)
        return claimed
    address, din, payload = claimed
    try:
        printer.send(address, payload)
    except printer.PrinterUnreachable as unreachable:
        _fail(database, job_id, str(unreachable))
        return "failed"
    database.write(lambda session: _record(session, job_id, din))
    log.info("label print %s: %s label of %s taken by the printer at %s", job_id, "ZPL", din, address)
    return "printed"


class _Stale(Exception):
    pass


def _din_of(session: Session, job: LabelPrint) -> str:
    return session.execute(select(Batch.din).where(Batch.id == job.batch_id)).scalar_one()


def _record(session: Session, job_id: int, din: str) -> None:
    job = session.get(LabelPrint, job_id)
    assert job is not None
    who = actor_of(session.get(User, job.requested_by_id))
    batch = batches.find(session, din, for_update=True)
    assert batch is not None
    event = append_batch_event(
        session, batch, who, "label_printed", {"kind": job.kind, "format": "zpl", "printer": job.printer, "job": job.id}
    )
    job.status, job.event_seq, job.finished_at = "printed", event.seq, utcnow()
