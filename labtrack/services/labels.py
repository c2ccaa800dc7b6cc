"""Labels sent to a thermal printer (R-ZPL-1): a print job per request, sent by a worker task.

``request_print`` checks, in the request's unit of work, that the label may be printed
now (the same rules as the PDF label), writes a ``queued`` job naming the printer, and
asks a worker to send it once the request has committed. The task's job
(``labtrack.jobs.print_label``) claims the job and renders the label again (``claim_job``),
sends it over raw TCP and, only if the printer took it, appends the ``label_printed``
event (``record_print``), each step in a unit of work of its own. A printer that does
not answer fails the job (``fail_job``) with the reason, and no event is appended. A job
is sent at most once: a task delivered twice finds the job claimed and sends nothing,
since two labels for one product are a hazard and a missing one is visible; a job not
sent within ``STALE_AFTER`` fails instead of printing long after someone asked for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import after_commit
from labtrack.documents.zpl import render_zpl
from labtrack.domain.actors import Actor
from labtrack.domain.errors import Conflict, NotFound
from labtrack.domain.operations import UNFINISHED_PRINT, LabelPrintStatus
from labtrack.models import Batch, LabelPrint, User
from labtrack.services import batches, documents
from labtrack.services.auth import actor_of
from labtrack.services.streams import append_batch_event

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
        batch_id=batch.id, kind=kind, printer=settings.printer, status=LabelPrintStatus.QUEUED,
        requested_by_id=actor.id, requested_at=utcnow(),
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


class Stale(Exception):
    """The job waited longer than ``STALE_AFTER`` for a worker: it fails instead of printing."""


def claim_job(session: Session, job_id: int, settings: LabelSettings) -> tuple[str, str, bytes] | str:
    """Take a queued job and render its label again: (printer, DIN, ZPL), or the status of a job already taken
    (``missing`` if there is none). Raises ``Stale`` for a job too old to print and the rules' refusal for
    a batch that moved on since the request."""
    job = session.get(LabelPrint, job_id)
    if job is None:
        return "missing"
    claimed = session.execute(
        update(LabelPrint)
        .where(LabelPrint.id == job_id, LabelPrint.status == LabelPrintStatus.QUEUED)
        .values(status=LabelPrintStatus.SENDING)
    )
    if claimed.rowcount != 1:
        return job.status
    if utcnow() - job.requested_at > STALE_AFTER:
        raise Stale(f"not sent: no worker took it within {int(STALE_AFTER.total_seconds() // 60)} minutes")
    who = actor_of(session.get(User, job.requested_by_id))
    batch = batches.get(session, who, _din_of(session, job))
    view = documents.label_view(batch, who, kind=job.kind, facility=settings.facility, zone=settings.zone)
    return job.printer, batch.din, render_zpl(view).encode("ascii")


def fail_job(session: Session, job_id: int, reason: str) -> None:
    """Mark the job failed with ``reason``, unless it has finished already."""
    session.execute(
        update(LabelPrint)
        .where(LabelPrint.id == job_id, LabelPrint.status.in_(UNFINISHED_PRINT))
        .values(status=LabelPrintStatus.FAILED, error=reason, finished_at=utcnow())
    )


def _din_of(session: Session, job: LabelPrint) -> str:
    return session.execute(select(Batch.din).where(Batch.id == job.batch_id)).scalar_one()


def record_print(session: Session, job_id: int, din: str) -> None:
    """The printer took the job's label: append ``label_printed`` to the batch and mark the job printed."""
    job = session.get(LabelPrint, job_id)
    assert job is not None
    who = actor_of(session.get(User, job.requested_by_id))
    batch = batches.find(session, din, for_update=True)
    assert batch is not None
    event = append_batch_event(
        session, batch, who, "label_printed", {"kind": job.kind, "format": "zpl", "printer": job.printer, "job": job.id}
    )
    job.status, job.event_seq, job.finished_at = LabelPrintStatus.PRINTED, event.seq, utcnow()
