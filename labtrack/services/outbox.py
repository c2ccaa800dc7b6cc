"""The transactional outbox: notifications written with their cause, delivered after the commit.

``enqueue`` adds a row in the caller's transaction and, once that transaction has
committed, hands its id to a background thread that asks the broker to run the
dispatch task for it (through the ``Send`` the app put in the unit of work's
``session_info`` under ``DISPATCH``: this module knows no Flask and no Celery),
so no step waits for the broker. If the broker is down,
the request is dropped with a log line (never an error: the step is already
recorded) and the sweep, every ``LABTRACK_OUTBOX_SWEEP_SECONDS``, finds the row
anyway. Delivery is at least once.

Dispatch (``labtrack/jobs.py``, which gives each step its unit of work; this module
never commits) claims due rows in one short transaction: it takes a lease on them
(``locked_until``/``locked_by``; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, the
serial write lock on SQLite), and writes their in-app notifications in that same
transaction (unique per row and user, so exactly once). The webhook and e-mail
go out after the commit, in parallel threads, and a second short transaction
logs each attempt and either completes the row or schedules a retry with
exponential backoff (``LABTRACK_WEBHOOK_RETRY_SECONDS`` doubling, at most an hour
apart) until 24 h after the row was written, when it is marked ``failed``. A
worker killed mid-delivery leaves its lease to expire; the next sweep redelivers
those rows with the same ``X-LabTrack-Delivery`` id.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import random
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.orm import Session

from labtrack.clock import utcnow
from labtrack.db import after_commit, chunks
from labtrack.domain.operations import OutboxStatus
from labtrack.models import Batch, Clinic, OutboxDelivery, OutboxMessage
from labtrack.ops import logs
from labtrack.services import notifications
from labtrack.services.notifications import Recipients, Webhook

log = logging.getLogger(__name__)

CHUNK = 100  # rows per claim: one short transaction each side of the deliveries
DELIVERY_THREADS = 16
RETRY_WINDOW = timedelta(hours=24)
MAX_BACKOFF = timedelta(hours=1)
_PENDING = "labtrack_outbox_pending"
DISPATCH = "labtrack_outbox_send"  # session.info key: the Send of the app whose unit of work this is
Send = Callable[[list[int]], None]  # asks the broker to run the dispatch task for these rows


def enqueue(
    session: Session, topic: str, batch: Batch | None, payload: dict[str, Any], *, clinic_id: int | None = None
) -> OutboxMessage:
    """Write a notification in the caller's transaction; dispatch is requested after it commits.

    ``clinic_id`` addresses a clinic without a batch (a lookback tells each clinic of its own batches).
    """
    message = OutboxMessage(
        topic=topic,
        batch_id=batch.id if batch else None,
        clinic_id=batch.clinic_id if batch else clinic_id,
        payload=payload | ({"din": batch.din} if batch else {}),
        request_id=logs.current_request_id(),
    )
    session.add(message)
    pending = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = []
        send = session.info.get(DISPATCH)
        if send is not None:
            after_commit(session, lambda: request_dispatch([m.id for m in pending], send))
    pending.append(message)
    return message


def request_dispatch(ids: list[int], send: Send) -> None:
    """Ask a worker to dispatch these rows now, without waiting for the broker (see ``_Publisher``)."""
    if ids:
        _publisher.submit(send, ids)


def publish(send: Send, ids: list[int]) -> bool:
    """Send the dispatch tasks for ``ids``; False (logged) when the broker cannot take them."""
    try:
        for part in chunks(ids, CHUNK):  # a burst is shared out among the workers
            send(list(part))
    except Exception as error:  # any broker failure: the sweep delivers these rows later
        log.warning("outbox %s: broker unavailable (%s); the sweep will deliver them", ids, error)
        return False
    return True


class _Publisher:
    """Publishes dispatch requests from one background thread per process.

    A step never waits for the broker: not the ~15 ms of a publish to the embedded
    SQLite broker, nor the seconds redis-py spends retrying a Redis that is down.
    Requests waiting together are merged into one publish. A request lost with
    its process (or dropped by a failed publish) only waits for the sweep; at a
    normal exit the process gives the thread a moment to finish (``drain``).
    """

    def __init__(self) -> None:
        self._idle = threading.Condition()
        self._queue: queue.SimpleQueue[tuple[Send, list[int]]] = queue.SimpleQueue()
        self._pending = 0
        self._pid: int | None = None

    def submit(self, send: Send, ids: list[int]) -> None:
        with self._idle:
            if self._pid != os.getpid():  # first use in this process (or a forked child of the one that had it)
                self._queue, self._pending, self._pid = queue.SimpleQueue(), 0, os.getpid()
                threading.Thread(target=self._run, args=(self._queue,), name="outbox-publisher", daemon=True).start()
            self._pending += 1
            self._queue.put((send, ids))

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted request has been published (or dropped); False on timeout."""
        with self._idle:
            return self._pid != os.getpid() or self._idle.wait_for(lambda: self._pending == 0, timeout)

    def _run(self, requests: queue.SimpleQueue[tuple[Send, list[int]]]) -> None:
        while True:
            waiting = [requests.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    waiting.append(requests.get_nowait())
            merged: dict[int, tuple[Send, list[int]]] = {}
            for send, ids in waiting:
                merged.setdefault(id(send), (send, []))[1].extend(ids)
            for send, ids in merged.values():
                publish(send, ids)
            with self._idle:
                self._pending -= len(waiting)
                self._idle.notify_all()


_publisher = _Publisher()
drain_publisher = _publisher.drain
atexit.register(drain_publisher, 2.0)


@dataclass(frozen=True)
class Settings:
    lease: timedelta
    retry_base: timedelta
    smtp_url: str | None
    worker: str

    @classmethod
    def of(cls, config: Any) -> Settings:
        return cls(
            lease=timedelta(seconds=float(config["LABTRACK_OUTBOX_LEASE_SECONDS"])),
            retry_base=timedelta(seconds=float(config["LABTRACK_WEBHOOK_RETRY_SECONDS"])),
            smtp_url=config.get("SMTP_URL"),
            worker=f"{socket.gethostname()}:{os.getpid()}",
        )


@dataclass(frozen=True)
class Email:
    recipients: list[str]
    subject: str
    text: str


@dataclass(frozen=True)
class Job:
    """One claimed row's outstanding external deliveries."""

    outbox_id: int
    attempt: int
    webhook: Webhook | None
    email: Email | None


@dataclass(frozen=True)
class Attempt:
    outbox_id: int
    channel: str
    attempt: int
    target: str
    at: datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def backoff(base: timedelta, attempts: int) -> timedelta:
    """base, 2 base, 4 base, ... capped at an hour, with up to 10 % jitter so retries spread out."""
    delay = min(base * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)
    return delay * (1 + random.random() / 10)


def claim(session: Session, settings: Settings, ids: Sequence[int] | None, limit: int) -> tuple[int, list[Job]]:
    """Lease up to ``limit`` due rows (of ``ids``, or any) and write their in-app notifications, in the caller's
    transaction; return how many were claimed and the external deliveries they still need."""
    now = utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING.value,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .order_by(OutboxMessage.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if ids is not None:
        due = due.where(OutboxMessage.id.in_(ids))
    claimed = list(session.execute(due).scalars())
    if not claimed:
        return 0, []
    messages = session.execute(select(OutboxMessage).where(OutboxMessage.id.in_(claimed))).scalars().all()
    clinic_ids = {m.clinic_id for m in messages if m.clinic_id is not None}
    clinics = {c.id: c for c in session.execute(select(Clinic).where(Clinic.id.in_(clinic_ids))).scalars()}
    recipients = Recipients(session)
    notifications.fan_out(session, messages, recipients)
    jobs = []
    for message in messages:
        clinic = clinics.get(message.clinic_id) if message.clinic_id is not None else None
        webhook = None
        if (
            message.webhook_delivered_at is None
            and clinic is not None
            and clinic.webhook_url
            and notifications.route_of(message.topic).clinic
        ):
            webhook = notifications.webhook_for(message, clinic)
        email = None
        if message.emailed_at is None and settings.smtp_url:
            addresses = [user.email for user in recipients.of(message) if user.email]
            if addresses:
                text = notifications.describe(message.topic, message.payload)
                email = Email(addresses, f"LabTrack: {text[:120]}", text)
        if webhook is None and email is None:
            message.status = OutboxStatus.DELIVERED.value
            message.delivered_at = now
            message.locked_until = message.locked_by = None
            _log_row(message, logging.INFO, "delivered (in-app only)")
            continue
        message.locked_until = now + settings.lease
        message.locked_by = settings.worker
        jobs.append(Job(message.id, message.attempts + 1, webhook, email))
    return len(claimed), jobs


def _attempt(job: Job, channel: str, target: str, send: Any) -> Attempt:
    started = monotonic()
    at = utcnow()
    status_code = error = None
    try:
        status_code = send()
        ok = status_code is None or 200 <= status_code < 300
        if not ok:
            error = f"HTTP {status_code}"
    except Exception as exc:  # every failure is logged and retried
        ok = False
        error = f"{type(exc).__name__}: {exc}"[:1000]
    duration = int((monotonic() - started) * 1000)
    return Attempt(job.outbox_id, channel, job.attempt, target[:500], at, ok, status_code, error, duration)


def _send(job: Job, smtp_url: str | None) -> list[Attempt]:
    attempts = []
    if job.webhook is not None:
        webhook = job.webhook
        attempts.append(_attempt(job, "webhook", webhook.url, lambda: notifications.post(webhook)))
    if job.email is not None and smtp_url:
        email = job.email
        target = ", ".join(email.recipients)
        attempts.append(
            _attempt(
                job,
                "email",
                target,
                lambda: notifications.send_email(smtp_url, email.recipients, email.subject, email.text),
            )
        )
    return attempts


_executor: tuple[int, ThreadPoolExecutor] | None = None


def deliver(jobs: list[Job], smtp_url: str | None) -> list[Attempt]:
    """Send the claimed rows' webhooks and e-mails in parallel, outside any transaction; every attempt, as made."""
    sent = _threads().map(lambda job: _send(job, smtp_url), jobs)
    return [attempt for per_job in sent for attempt in per_job]


def _threads() -> ThreadPoolExecutor:
    """One pool per process (a forked worker child makes its own), so kept-alive connections are reused."""
    global _executor
    if _executor is None or _executor[0] != os.getpid():
        _executor = (os.getpid(), ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="outbox"))
    return _executor[1]


def record(session: Session, settings: Settings, jobs: list[Job], attempts: list[Attempt]) -> None:
    """Log each attempt and complete each row, or schedule its retry; rows whose lease we lost are left alone."""
    now = utcnow()
    if attempts:
        session.execute(
            insert(OutboxDelivery),
            [
                {
                    "outbox_id": a.outbox_id,
                    "channel": a.channel,
                    "attempt": a.attempt,
                    "target": a.target,
                    "at": a.at,
                    "ok": a.ok,
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                    "worker": settings.worker,
                }
                for a in attempts
            ],
        )
    by_row: dict[int, list[Attempt]] = {}
    for attempt in attempts:
        by_row.setdefault(attempt.outbox_id, []).append(attempt)
    rows = session.execute(
        select(OutboxMessage).where(OutboxMessage.id.in_([job.outbox_id for job in jobs])).with_for_update()
    ).scalars()
    for message in rows:
        if message.locked_by != settings.worker:
            continue  # our lease ran out and another worker owns the row now; it will deliver again
        results = by_row.get(message.id, [])
        for result in results:
            if result.ok and result.channel == "webhook":
                message.webhook_delivered_at = result.at
            elif result.ok and result.channel == "email":
                message.emailed_at = result.at
        message.locked_until = message.locked_by = None
        failures = [r for r in results if not r.ok]
        if not failures:
            message.status = OutboxStatus.DELIVERED.value
            message.delivered_at = now
            _log_row(message, logging.INFO, f"delivered ({', '.join(r.channel for r in results)})")
            continue
        message.attempts += 1
        message.last_error = "; ".join(f"{r.channel}: {r.error}" for r in failures)
        if now - message.created_at >= RETRY_WINDOW:
            message.status = OutboxStatus.FAILED.value
            _log_row(message, logging.ERROR, f"gave up after {message.attempts} attempts: {message.last_error}")
        else:
            message.next_attempt_at = now + backoff(settings.retry_base, message.attempts)
            _log_row(message, logging.WARNING, f"attempt {message.attempts} failed, retrying: {message.last_error}")


def _log_row(message: OutboxMessage, level: int, outcome: str) -> None:
    """One line per row and outcome, under the request id of the request that wrote the row (R-OPS-3)."""
    with logs.context(request_id=message.request_id, din=message.payload.get("din")):
        log.log(level, "outbox %s %s: %s", message.id, message.topic, outcome)
