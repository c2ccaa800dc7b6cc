"""Verification runs (R-SCL-2): full ones in the background, the incremental one after each checkpoint.

A full run (``POST /api/v1/audit/verifications``, or the pages' button) is a row in
``audit_verifications`` and a Celery task. The task checks the batches in chunks in
id order (``CHUNK_BATCHES``); after each chunk it stores the failures found, the counts
and the last batch id done, so a run whose worker died is taken up where it stopped
(``resume_stalled``, on beat): a run is claimed under a lease renewed at every chunk, so
two workers never run the same one. Each chunk reads one snapshot; a batch is always
checked whole within a chunk. Last come the admin chain, the streams the checkpoint
signed that are gone, and the result. The job (``labtrack.jobs.verify_full``) gives the
claim, each chunk and the result a unit of work of its own; this module never commits.

A run that finds nothing wrong vouches for the newest checkpoint it was checked against:
the incremental verification (``chains.verify_recent``) starts from the newest such
checkpoint. The checkpoint task runs one incremental verification right after each
checkpoint and records it the same way, so the base moves every 10 minutes and a routine
check costs the events of the last interval.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.orm import Session

from labtrack.audit import chains
from labtrack.clock import utcnow
from labtrack.domain.actors import Action, Actor, require
from labtrack.domain.errors import NotFound
from labtrack.domain.hashing import iso_utc
from labtrack.domain.operations import VerificationKind, VerificationStatus
from labtrack.models import AuditVerification, Batch, Checkpoint

CHUNK_BATCHES = 2000
LEASE = timedelta(minutes=2)
ACTIVE = (VerificationStatus.QUEUED, VerificationStatus.RUNNING)


def verified_checkpoint(session: Session) -> Checkpoint | None:
    """The newest checkpoint a run (full or incremental) found everything consistent with."""
    newest = (
        select(func.max(AuditVerification.checkpoint_id))
        .where(AuditVerification.status == VerificationStatus.DONE, AuditVerification.checkpoint_id.is_not(None))
        .scalar_subquery()
    )
    return session.execute(select(Checkpoint).where(Checkpoint.id == newest)).scalar_one_or_none()


def request_full(session: Session, actor: Actor) -> tuple[AuditVerification, bool]:
    """A full run for the actor (QA, admin): the one already queued or running, else a new one (True)."""
    require(actor, Action.AUDIT)
    active = session.execute(
        select(AuditVerification)
        .where(AuditVerification.kind == VerificationKind.FULL, AuditVerification.status.in_(ACTIVE))
        .order_by(AuditVerification.id)
        .limit(1)
    ).scalar_one_or_none()
    if active is not None:
        return active, False
    total = session.execute(select(func.count()).select_from(Batch)).scalar_one()
    run = AuditVerification(
        kind=VerificationKind.FULL,
        status=VerificationStatus.QUEUED,
        requested_by_id=actor.id,
        requested_at=utcnow(),
        batches_total=total,
        batches_done=0,
        events_done=0,
        after_batch_id=0,
        failures=[],
    )
    session.add(run)
    session.flush()
    return run, True


def get(session: Session, actor: Actor, run_id: int) -> AuditVerification:
    """A full verification run, for an auditor; an unknown one (or an incremental record) is 404."""
    require(actor, Action.AUDIT)
    run = session.get(AuditVerification, run_id)
    if run is None or run.kind != VerificationKind.FULL:
        raise NotFound("No such verification run.")
    return run


def _finished_percent(run: AuditVerification) -> float:
    """The progress of a run with nothing to check: all of it once done, none before."""
    return 100.0 if run.status == VerificationStatus.DONE else 0.0


def latest_full(session: Session) -> AuditVerification | None:
    """The newest full verification run, whatever its state, or None before the first."""
    return session.execute(
        select(AuditVerification)
        .where(AuditVerification.kind == VerificationKind.FULL)
        .order_by(AuditVerification.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def as_dict(run: AuditVerification) -> dict[str, object]:
    """A run as the API and the audit page show it: state, times, progress in batches and events, the report."""
    total = max(run.batches_total, run.batches_done)
    return {
        "id": run.id,
        "status": run.status,
        "requested_at": run.requested_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "progress": {
            "batches_done": run.batches_done,
            "batches_total": total,
            "events_done": run.events_done,
            "percent": round(100 * run.batches_done / total, 1) if total else _finished_percent(run),
        },
        "result": run.result,
        "error": run.error,
    }


def claim(session: Session, run_id: int, now: datetime) -> bool:
    """Take the run's lease: it is queued, or its last holder has not renewed it within ``LEASE``."""
    claimed = session.execute(
        update(AuditVerification)
        .where(
            AuditVerification.id == run_id,
            AuditVerification.status.in_(ACTIVE),
            or_(AuditVerification.heartbeat_at.is_(None), AuditVerification.heartbeat_at < now - LEASE),
        )
        .values(
            status=VerificationStatus.RUNNING,
            heartbeat_at=now,
            started_at=func.coalesce(AuditVerification.started_at, now),
        )
    )
    return claimed.rowcount == 1


def record_chunk(session: Session, run_id: int, verifier: chains.Chunked) -> bool:
    """Check the next chunk of batches and store the progress (renewing the lease); False when none were left."""
    run = session.get(AuditVerification, run_id, with_for_update=True)
    assert run is not None
    checked = verifier.batches_after(run.after_batch_id, CHUNK_BATCHES)
    if checked is None:
        return False
    run.after_batch_id = checked.last_batch_id
    run.batches_done += checked.batches
    run.events_done += checked.events
    run.failures = [*run.failures, *checked.failures]
    run.heartbeat_at = utcnow()
    return True


def finish(session: Session, run_id: int, verifier: chains.Chunked) -> None:
    """Store the run's result: its chunks' findings with the checks made last, and the checkpoint it vouches for."""
    run = session.get(AuditVerification, run_id, with_for_update=True)
    assert run is not None
    report = verifier.finish(run.failures, run.batches_done, run.events_done)
    run.status, run.finished_at, run.heartbeat_at = VerificationStatus.DONE, utcnow(), utcnow()
    run.result = _stored(report)
    run.checkpoint_id = _vouched(report)


def fail(session: Session, run_id: int, message: str) -> None:
    """Mark the run failed with ``message`` (the error that stopped it)."""
    session.execute(
        update(AuditVerification)
        .where(AuditVerification.id == run_id)
        .values(status=VerificationStatus.FAILED, error=message, finished_at=utcnow())
    )


def _stored(report: chains.Report) -> dict[str, object]:
    """The report as JSON can hold it (times as ISO 8601 UTC)."""
    stored = report.as_dict()
    if report.checkpoint is not None:
        stored["checkpoint"] = report.checkpoint | {"created_at": iso_utc(report.checkpoint["created_at"])}  # type: ignore[arg-type]
    return stored


def _vouched(report: chains.Report) -> int | None:
    checkpoint = report.checkpoint
    return int(checkpoint["id"]) if report.ok and checkpoint is not None and checkpoint.get("ok") else None  # type: ignore[arg-type]


def stalled(now: datetime) -> Select[tuple[int]]:
    """Full runs that are queued or whose lease lapsed (their worker died): the beat task hands them out again."""
    lapsed = or_(AuditVerification.heartbeat_at.is_(None), AuditVerification.heartbeat_at < now - LEASE)
    return select(AuditVerification.id).where(
        AuditVerification.kind == VerificationKind.FULL, AuditVerification.status.in_(ACTIVE), lapsed
    )


def add_incremental(session: Session, report: chains.Report) -> None:
    """Store an incremental verification's outcome (``chains.verify_recent``, made after a checkpoint)."""
    now = utcnow()
    session.add(
        AuditVerification(
            kind=VerificationKind.INCREMENTAL,
            status=VerificationStatus.DONE,
            requested_at=now,
            started_at=now,
            finished_at=now,
            batches_total=report.batches_checked,
            batches_done=report.batches_checked,
            events_done=report.events_checked,
            after_batch_id=0,
            failures=report.failures,
            result=_stored(report),
            checkpoint_id=_vouched(report),
        )
    )
