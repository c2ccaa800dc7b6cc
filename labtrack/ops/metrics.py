"""Prometheus metrics (R-OPS-2), in ``prometheus_client``'s multiprocess mode under gunicorn.

Counters and histograms are written by whichever process sees the event: a web worker
(requests, refusals, steps, releases, the last full verification) or a Celery worker
(task durations and failures, from Celery's signals). With ``PROMETHEUS_MULTIPROC_DIR``
set (gunicorn.conf.py and ``dev.py run`` set one up) each process writes its own
memory-mapped files there and a scrape adds them up, so the figures are the host's,
whichever worker answers. Without it (one process: tests, the werkzeug server) they
are that process's.

What the database knows (the outbox backlog, batches by status, open deviations, the
last checkpoint) is read at scrape time by ``DatabaseFigures``, in the scraping process
only, so those gauges are never summed across workers. Each read is served by an index.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import event, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import Database
from labtrack.domain.lifecycle import TERMINAL, Status
from labtrack.domain.operations import OutboxStatus
from labtrack.domain.process import ALL_STEP_NAMES
from labtrack.models import Batch, BatchEvent, Checkpoint, Deviation, OutboxMessage

log = logging.getLogger(__name__)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
DEFAULT_ALLOW = "127.0.0.0/8,::1/128"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0)
STEP_TYPES = frozenset(ALL_STEP_NAMES)
_SEEN = "labtrack_metrics_events"

REQUESTS = Histogram(
    "labtrack_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint, method and status.",
    ["endpoint", "method", "status"],
    buckets=LATENCY_BUCKETS,
)
REFUSALS = Counter(
    "labtrack_refusals_total", "API requests refused with a problem+json answer, by its code.", ["code", "status"]
)
STEPS = Counter("labtrack_steps_total", "Process steps recorded (committed), by step.", ["step"])
RELEASES = Counter("labtrack_releases_total", "Batches released (committed), by kind.", ["kind"])
VERIFICATION_OK = Gauge(
    "labtrack_audit_verification_ok",
    "The last full audit verification's result: 1 every chain verified, 0 a failure.",
    multiprocess_mode="mostrecent",
)
VERIFICATION_AT = Gauge(
    "labtrack_audit_verification_timestamp_seconds",
    "When the last full audit verification finished (Unix time).",
    multiprocess_mode="mostrecent",
)
TASKS = Histogram(
    "labtrack_task_duration_seconds",
    "Celery task run time, by task and outcome.",
    ["task", "outcome"],
    buckets=TASK_BUCKETS,
)
TASK_FAILURES = Counter("labtrack_task_failures_total", "Celery tasks that raised, by task.", ["task"])


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


def allowed_networks(setting: str | None) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``LABTRACK_METRICS_ALLOW``: comma-separated addresses or networks (default: loopback only)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in (setting or DEFAULT_ALLOW).split(",")
        if part.strip()
    )


def may_scrape(address: str | None, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        peer = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(peer.version == network.version and peer in network for network in networks)


# --- events the database commits: steps and releases ------------------------------------------


def _note_events(session: Session, _context: Any) -> None:
    for instance in session.new:
        if isinstance(instance, BatchEvent) and (instance.type in STEP_TYPES or instance.type == "released"):
            session.info.setdefault(_SEEN, []).append(instance)


def _count_committed(session: Session) -> None:
    for instance in session.info.pop(_SEEN, ()):
        if instance.type == "released":
            RELEASES.labels("conditional" if instance.data.get("conditional_release") else "full").inc()
        else:
            STEPS.labels(instance.type).inc()


def _forget(session: Session) -> None:
    session.info.pop(_SEEN, None)


def count_committed_events() -> None:
    """Count steps and releases once their transaction commits (never a rolled-back or retried one)."""
    if not event.contains(Session, "after_flush", _note_events):
        event.listen(Session, "after_flush", _note_events)
        event.listen(Session, "after_commit", _count_committed)
        event.listen(Session, "after_soft_rollback", lambda session, _previous: _forget(session))


# --- what the database knows, read at scrape time ------------------------------------------------

FINAL = tuple(status.value for status in TERMINAL)
OPEN_STATUSES = tuple(status.value for status in Status if status not in TERMINAL)


class DatabaseFigures(Collector):
    """Gauges read from the database by the scraping process: never summed across workers."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("labtrack_metrics_database_up", "1 when the scrape could read the database.")
        session = self.database.reader()
        try:
            figures = list(self._figures(session))
        except DBAPIError as error:
            log.warning("metrics: the database did not answer (%s)", type(error.orig).__name__)
            up.add_metric([], 0)
            yield up
            return
        finally:
            session.close()
        up.add_metric([], 1)
        yield up
        yield from figures

    def _figures(self, session: Session) -> Iterator[Metric]:
        now = utcnow()
        backlog = session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status == OutboxStatus.PENDING.value
            )
        ).one()
        yield _gauge("labtrack_outbox_backlog", "Outbox rows waiting for delivery.", backlog[0])
        oldest = (now - backlog[1]).total_seconds() if backlog[1] is not None else 0.0
        yield _gauge(
            "labtrack_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox row (0: none).", oldest
        )
        failed = session.execute(
            select(func.count()).where(OutboxMessage.status == OutboxStatus.FAILED.value)
        ).scalar_one()
        yield _gauge("labtrack_outbox_failed", "Outbox rows given up on after 24 h of retries.", failed)
        by_status = GaugeMetricFamily(
            "labtrack_batches", "Batches not yet in a final state, by status.", labels=["status"]
        )
        counts = dict(
            session.execute(
                select(Batch.status, func.count()).where(Batch.status.not_in(FINAL)).group_by(Batch.status)
            ).all()
        )
        for status in OPEN_STATUSES:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status
        open_deviations = session.execute(select(func.count()).where(Deviation.status == "open")).scalar_one()
        yield _gauge("labtrack_deviations_open", "Deviations open (each holds its batch).", open_deviations)
        last = session.execute(select(func.max(Checkpoint.created_at))).scalar_one()
        # No checkpoint yet counts from nothing: a new installation alerts until its first one.
        age = (now - last).total_seconds() if last is not None else float("inf")
        yield _gauge("labtrack_checkpoint_age_seconds", "Seconds since the last signed checkpoint.", age)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def exposition(database: Database) -> bytes:
    """The text format: every process's counters (multiprocess mode) or this one's, and the database figures."""
    registry = CollectorRegistry()
    if multiprocess():
        MultiProcessCollector(registry)
    registry.register(DatabaseFigures(database))
    local = b"" if multiprocess() else generate_latest(REGISTRY)
    return local + generate_latest(registry)


def verification_finished(ok: bool) -> None:
    VERIFICATION_OK.set(1 if ok else 0)
    VERIFICATION_AT.set_to_current_time()
