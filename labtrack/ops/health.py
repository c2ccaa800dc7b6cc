"""Liveness and readiness (R-OPS-1).

``/healthz`` says the process answers and touches nothing else: a load balancer or an
orchestrator restarts a process whose ``/healthz`` fails, and must not restart every
web worker because the database is away. ``/readyz`` asks the database and the broker,
both at once, each within ``READY_TIMEOUT_S``; it answers 503 naming what did not
answer, so traffic goes elsewhere until it does.

A check runs on a small pool of its own, so a dependency that hangs (a black-holed
address) costs the probe its second, not a request thread; a check still hanging
when the next probe comes keeps its pool slot, and the pool's queue makes the next
probes time out too, which is the truth.
"""

from __future__ import annotations

import contextlib
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from time import monotonic

import redis
from celery import Celery
from sqlalchemy import text

from labtrack.db import Database

READY_TIMEOUT_S = 1.0
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    duration_ms: int

    def as_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "detail": self.detail, "duration_ms": self.duration_ms}


def _database(database: Database) -> None:
    with database.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def _broker(celery: Celery, url: str) -> None:
    if url.startswith(("redis://", "rediss://")):
        with redis.Redis.from_url(
            url, socket_connect_timeout=READY_TIMEOUT_S, socket_timeout=READY_TIMEOUT_S
        ) as client:
            client.ping()
        return
    if url.startswith("sqla+sqlite:///"):  # the embedded broker: its SQLite file opens and answers a query
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqla+sqlite:///"), timeout=READY_TIMEOUT_S)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return
    with celery.connection_for_write() as connection:  # any other transport: open its channel
        connection.ensure_connection(max_retries=0, timeout=READY_TIMEOUT_S)
        connection.default_channel  # noqa: B018 (connects)


def _outcome(name: str, future: Future, started: float, deadline: float) -> Check:
    try:
        future.result(timeout=max(deadline - monotonic(), 0.0))
    except FutureTimeout:
        return Check(name, False, f"no answer within {READY_TIMEOUT_S:g} s", int((monotonic() - started) * 1000))
    except Exception as error:  # any failure to answer is "not ready", named
        return Check(name, False, f"{type(error).__name__}: {error}"[:300], int((monotonic() - started) * 1000))
    return Check(name, True, "answered", int((monotonic() - started) * 1000))


def readiness(database: Database, celery: Celery, broker_url: str) -> list[Check]:
    """Ask the database and the broker together; each gets ``READY_TIMEOUT_S`` from now."""
    started = monotonic()
    deadline = started + READY_TIMEOUT_S
    futures = {"database": _pool.submit(_database, database), "broker": _pool.submit(_broker, celery, broker_url)}
    return [_outcome(name, future, started, deadline) for name, future in futures.items()]
