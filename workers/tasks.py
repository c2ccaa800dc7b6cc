"""Celery tasks: thin adapters over the services, taking ids (never ORM objects).

Every task is idempotent (running it twice has the effect of running it once):
dispatch claims rows under a lease and in-app notifications are unique per row
and user; the watchers re-check their condition under the batch's row lock; a
second checkpoint signs the same heads again. Each runs inside the Flask app
context (``labtrack.extensions.celery_init_app``); the task or ``labtrack/jobs.py`` owns
each transaction, one unit of work per step, and the services never commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from flask import current_app

from labtrack import extensions, jobs
from labtrack.audit import checkpoints, keys, partitions
from labtrack.db import database
from labtrack.extensions import (
    TASK_CHECKPOINT,
    TASK_CUSTODY_WATCH,
    TASK_DISPATCH,
    TASK_EXPIRY_WATCH,
    TASK_HOUSEKEEPING,
    TASK_PARTITIONS,
    TASK_RESUME_VERIFICATIONS,
    TASK_SWEEP,
    TASK_VERIFY,
)
from labtrack.services import housekeeping, outbox

log = logging.getLogger(__name__)


def _settings() -> outbox.Settings:
    return outbox.Settings.of(current_app.config)


def _sweep_budget() -> float:
    return max(float(current_app.config["LABTRACK_OUTBOX_SWEEP_SECONDS"]) - 1, 1.0)


@shared_task(name=TASK_DISPATCH)
def dispatch_outbox(ids: list[int]) -> int:
    """Deliver the rows a commit just wrote, then whatever else is due.

    Rows already claimed or delivered are skipped. Going on with the due rows lets a
    worker drain a burst at its own pace instead of one broker message at a time (the
    embedded broker hands out a message per poll, once a second).
    """
    lab_db, settings = database(), _settings()
    handled = sum(
        jobs.dispatch(lab_db, settings, ids[start : start + outbox.CHUNK]) for start in range(0, len(ids), outbox.CHUNK)
    )
    return handled + jobs.sweep(lab_db, settings, budget_s=_sweep_budget())


@shared_task(name=TASK_SWEEP)
def sweep_outbox() -> int:
    """Deliver every due row: retries, and rows whose after-commit request never reached a worker."""
    delivered = jobs.sweep(database(), _settings(), budget_s=_sweep_budget())
    if delivered:
        log.info("outbox sweep: %s row(s) handled", delivered)
    return delivered


@shared_task(name=TASK_EXPIRY_WATCH)
def expiry_watch() -> dict[str, list[str]]:
    warning = timedelta(minutes=int(current_app.config["LABTRACK_EXPIRY_WARNING_MINUTES"]))
    outcome = jobs.expiry_watch(database(), warning=warning)
    return {"expired": outcome.expired, "warned": outcome.warned}


@shared_task(name=TASK_CUSTODY_WATCH)
def custody_watch() -> list[str]:
    gap = timedelta(minutes=int(current_app.config["LABTRACK_CUSTODY_GAP_MINUTES"]))
    return jobs.custody_watch(database(), gap=gap).overdue


@shared_task(name=TASK_CHECKPOINT)
def make_checkpoint() -> int:
    key, origin = keys.lab_key(current_app.config), current_app.config["LABTRACK_FIN"]
    checkpoint = database().write(lambda session: checkpoints.create(session, key, origin))
    log.info("checkpoint %s: %s stream(s), root %s", checkpoint.id, checkpoint.tree_size, checkpoint.root)
    # R-SCL-2: the next routine check starts from here
    report = jobs.record_incremental(database(), keys.trusted_public_key(current_app.config))
    if not report.ok:
        log.error("incremental verification after checkpoint %s: %s failure(s)", checkpoint.id, len(report.failures))
    return checkpoint.id


@shared_task(name=TASK_VERIFY)
def verify_full(run_id: int) -> str:
    """A full verification run (R-SCL-2), from where it stopped if it had started."""
    return jobs.verify_full(database(), run_id, keys.trusted_public_key(current_app.config))


@shared_task(name=TASK_RESUME_VERIFICATIONS)
def resume_verifications() -> list[int]:
    """Hand out again the full runs left queued (broker down) or abandoned (their worker died)."""
    stalled = jobs.stalled_verifications(database())
    for run_id in stalled:
        extensions.hand_to_worker(current_app, run_id)
    return stalled


@shared_task(name=TASK_PARTITIONS)
def make_partitions() -> int:
    """The batch_events partitions for the coming months (R-SCL-1; PostgreSQL)."""
    made = database().write(partitions.extend)
    if made:
        log.info("batch_events: %s partition(s) made ahead", made)
    return made


@shared_task(name=TASK_HOUSEKEEPING)
def nightly_housekeeping() -> dict[str, int]:
    """R-OPS-6: delete expired operational rows in small batches; never history."""
    outcome = jobs.housekeeping(database(), housekeeping.Retention(idempotency=housekeeping.IDEMPOTENCY_WINDOW))
    log.info("housekeeping: %s row(s) deleted %s", outcome.total, outcome.deleted)
    return outcome.deleted
