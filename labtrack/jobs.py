"""Background jobs: the transactions of the watchers, the outbox, housekeeping, the label printer and the
verification runs, for the worker tasks (``workers/``).

The services and audit handle one thing in the caller's transaction and never commit; a job reads what is
due with a plain read, then gives each thing a unit of work of its own (``Database.write``), so one batch's
failure or lock never holds back the others and each commit is short. Work that leaves the process
(webhooks, e-mail, a label sent to the printer) runs between two units of work, never inside one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from time import monotonic
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.orm import Session

from labtrack.audit import chains, runs
from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.documents import printer
from labtrack.domain.errors import DomainError
from labtrack.domain.investigations import DueNotice
from labtrack.domain.operations import LabelPrintStatus, VerificationStatus
from labtrack.domain.outcomes import Inputs
from labtrack.domain.process import TissueSource
from labtrack.domain.spc import Metric
from labtrack.services import followup_watch as visits
from labtrack.services import housekeeping as purges
from labtrack.services import investigation_watchers, labels, outbox, outcomes, trends, watchers
from labtrack.services.adverse_reactions import today_in

log = logging.getLogger(__name__)


@dataclass
class WatchOutcome:
    expired: list[str] = field(default_factory=list)
    warned: list[str] = field(default_factory=list)
    overdue: list[str] = field(default_factory=list)


def each(database: Database, keys: Iterable[Any], work: Callable[[Session, Any], Any]) -> list[Any]:
    """Run ``work(session, key)`` for every key, one unit of work each; the keys it acted on (a true result)."""
    return [key for key in keys if database.write(lambda s, key=key: work(s, key))]


def expiry_watch(database: Database, *, warning: timedelta, now: datetime | None = None) -> WatchOutcome:
    """R-SEQ-3: expire unadministered batches past ``expires_at``; warn each batch's clinic once, ``warning``
    before."""
    now = now or utcnow()
    return WatchOutcome(
        expired=each(
            database, database.scalars(watchers.due_to_expire(now)), lambda s, din: watchers.expire(s, din, now)
        ),
        warned=each(
            database,
            database.scalars(watchers.due_to_warn(now, warning)),
            lambda s, din: watchers.warn(s, din, now, warning),
        ),
    )


def custody_watch(database: Database, *, gap: timedelta, now: datetime | None = None) -> WatchOutcome:
    """R-CUS-5: one ``custody_overdue`` deviation per hand-off left unreceived longer than ``gap``."""
    now = now or utcnow()
    overdue = each(
        database,
        database.scalars(watchers.overdue_handoffs(now, gap)),
        lambda s, din: watchers.open_overdue(s, din, now, gap),
    )
    return WatchOutcome(overdue=overdue)


def dispatch(
    database: Database, settings: outbox.Settings, ids: Sequence[int] | None = None, limit: int = outbox.CHUNK
) -> int:
    """Claim up to ``limit`` due outbox rows (of ``ids``, or any) and deliver them; return how many were claimed.

    Two short transactions: the claim (with the in-app notifications), then the record of the attempts; the
    webhooks and e-mail go out between them.
    """
    claimed, jobs = database.write(lambda s: outbox.claim(s, settings, ids, limit))
    if jobs:
        attempts = outbox.deliver(jobs, settings.smtp_url)
        database.write(lambda s: outbox.record(s, settings, jobs, attempts))
    return claimed


def sweep(database: Database, settings: outbox.Settings, budget_s: float = 25.0) -> int:
    """Deliver every due outbox row, chunk by chunk, for at most ``budget_s`` (the next sweep goes on)."""
    deadline = monotonic() + budget_s
    total = 0
    while monotonic() < deadline:
        claimed = dispatch(database, settings)
        total += claimed
        if claimed < outbox.CHUNK:
            break
    return total


def reaction_due_watch(database: Database, *, zone: str, now: datetime | None = None) -> investigation_watchers.Told:
    """R-ADV-2: tell QA of each reportable reaction 5 days before its report is due, and once it is overdue."""
    now = now or utcnow()
    today = today_in(zone, now)
    told = investigation_watchers.Told()
    for reaction_id in database.scalars(investigation_watchers.due_reactions(today)):
        notice = database.write(
            lambda s, reaction_id=reaction_id: investigation_watchers.tell_due(s, reaction_id, today, now)
        )
        if notice is not None:
            (told.overdue if notice == DueNotice.OVERDUE else told.due_soon).append(reaction_id)
    return told


def lookback_watch(database: Database, *, now: datetime | None = None) -> investigation_watchers.Told:
    """R-LBK-3: remind each clinic that has not acknowledged after 24 h; after 72 h tell QA which have not."""
    now = now or utcnow()
    told = investigation_watchers.Told()
    for lookback_id in database.scalars(investigation_watchers.waiting_lookbacks(now)):
        attempt = database.write(lambda s, lookback_id=lookback_id: investigation_watchers.chase(s, lookback_id, now))
        told.reminded += attempt.reminded
        told.escalated += attempt.escalated
    return told


def followup_watch(database: Database, *, today: date | None = None) -> visits.WatchReport:
    """R-OUT-4: mark visits missed when their window closes; remind each visit's clinic once, 7 days before it
    is due. Visits are named ``batch id:visit id``."""
    today = today or utcnow().date()
    missed = each(database, database.rows(visits.due_to_miss(today)), lambda s, row: visits.miss(s, *row, today))
    reminded = each(database, database.rows(visits.due_to_remind(today)), lambda s, row: visits.remind(s, *row, today))
    return visits.WatchReport(
        reminded=[f"{batch_id}:{visit_id}" for batch_id, visit_id in reminded],
        missed=[f"{batch_id}:{visit_id}" for batch_id, visit_id in missed],
    )


def outcome_statistics(database: Database, inputs: list[Inputs]) -> list[str]:
    """R-OUT-5: compute and keep each cohort's statistics, one unit of work per cohort; the keys kept."""
    return [database.write(lambda s, values=values: outcomes.store(s, values)) for values in inputs]


def trend_watch(database: Database) -> list[str]:
    """R-SPC-2: record every new Nelson flag of every chart and tell QA once per flagged point; idempotent."""
    new: list[str] = []
    for source in TissueSource:
        for metric in Metric:
            new += database.write(lambda s, source=source.value, metric=metric: trends.record_flags(s, source, metric))
    return new


def housekeeping(database: Database, retention: purges.Retention, now: datetime | None = None) -> purges.Purged:
    """R-OPS-6: delete what has outlived its use, ``purges.BATCH`` rows per unit of work; safe to run at any
    time, twice at once too."""
    outcome = purges.Purged()
    for purge in purges.purges(retention, now or utcnow()):
        deleted = 0
        while True:
            count = database.write(lambda s, purge=purge: purges.purge_batch(s, purge))
            deleted += count
            if count < purges.BATCH:
                break
        outcome.deleted[purge.table] = deleted
    return outcome


def print_label(database: Database, job_id: int, settings: labels.LabelSettings) -> str:
    """R-ZPL-1, the print task's work: claim and render, send over TCP, then record the print (or the failure).

    The claim is one unit of work and the record another; the label goes to the printer between them.
    """
    try:
        claimed = database.write(lambda s: labels.claim_job(s, job_id, settings))
    except labels.Stale as stale:
        return _print_failed(database, job_id, str(stale))
    except DomainError as refused:  # the batch moved on since the request (e.g. it left the clinic)
        return _print_failed(database, job_id, f"not sent: {refused.detail}")
    if isinstance(claimed, str):
        log.info("label print %s: already %s, not sent again", job_id, claimed)
        return claimed
    address, din, payload = claimed
    try:
        printer.send(address, payload)
    except printer.PrinterUnreachable as unreachable:
        return _print_failed(database, job_id, str(unreachable))
    database.write(lambda s: labels.record_print(s, job_id, din))
    log.info("label print %s: %s label of %s taken by the printer at %s", job_id, "ZPL", din, address)
    return LabelPrintStatus.PRINTED


def _print_failed(database: Database, job_id: int, reason: str) -> str:
    database.write(lambda s: labels.fail_job(s, job_id, reason))
    log.warning("label print %s failed: %s", job_id, reason)
    return LabelPrintStatus.FAILED


def verify_full(database: Database, run_id: int, public_key: Ed25519PublicKey) -> str:
    """R-SCL-2: claim the full run, check chunk after chunk from where it stopped (a unit of work each, which
    renews the lease), store the result; ``taken`` when another worker holds it or it is done."""
    if not database.write(lambda s: runs.claim(s, run_id, utcnow())):
        return "taken"
    try:
        with chains.Chunked(database.engine, public_key) as verifier:
            while database.write(lambda s: runs.record_chunk(s, run_id, verifier)):
                pass
            database.write(lambda s: runs.finish(s, run_id, verifier))
    except Exception as error:
        log.exception("verification run %s failed", run_id)
        message = f"{type(error).__name__}: {error}"[:2000]
        database.write(lambda s: runs.fail(s, run_id, message))
        raise
    return VerificationStatus.DONE


def stalled_verifications(database: Database, now: datetime | None = None) -> list[int]:
    """Full runs that are queued or whose lease lapsed (their worker died), to be handed out again."""
    return database.scalars(runs.stalled(now or utcnow()))


def record_incremental(database: Database, public_key: Ed25519PublicKey) -> chains.Report:
    """After a checkpoint: verify what was appended since the last verified one (a read), then store it."""
    with database.reader() as session:
        report = chains.verify_recent(session, public_key=public_key)
    database.write(lambda s: runs.add_incremental(s, report))
    return report
