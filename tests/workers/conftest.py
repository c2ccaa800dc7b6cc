"""Worker tests run a real Celery worker against the real broker: the embedded SQLite one, or
Redis when CELERY_BROKER_URL says so (CI). Each test publishes to a queue of its own, so runs
sharing one Redis never take each other's tasks; the timings are shortened so that the sweep,
the lease and the retries happen within seconds."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import update

from config import Config
from labtrack import create_app
from labtrack.models import Batch
from labtrack.services import outbox
from tests.workers.support import Receiver, Worker

BROKER_FROM_ENV = os.environ.get("CELERY_BROKER_URL", "")
ON_REDIS = BROKER_FROM_ENV.startswith("redis")


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return BROKER_FROM_ENV or f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"


@pytest.fixture
def smtp_url() -> str | None:
    return None


@pytest.fixture
def app(database_url: str, broker_url: str, smtp_url: str | None, tmp_path: Path):
    config = Config.from_env(
        instance_path=tmp_path / "instance",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        SECRET_KEY="test-secret",
        TESTING=True,
        ARGON2_TIME_COST=1,
        ARGON2_MEMORY_KIB=1024,
        SMTP_URL=smtp_url,
        LABTRACK_TASK_QUEUE=f"labtrack-test-{uuid.uuid4().hex[:12]}",
        LABTRACK_RATELIMIT_KEY_PREFIX=f"labtrack-test-{uuid.uuid4().hex[:12]}",
        LABTRACK_OUTBOX_SWEEP_SECONDS=1.0,
        LABTRACK_OUTBOX_LEASE_SECONDS=3.0,
        LABTRACK_WEBHOOK_RETRY_SECONDS=0.5,
    )
    application = create_app(config)
    yield application
    outbox.drain_publisher(5)  # what the test's requests published, before its queue is dropped
    application.extensions["labtrack.db"].dispose()
    drop_queue(application)


def drop_queue(app) -> None:
    """Leave a shared Redis as it was: the test's queue and kombu's bindings for it go with the test."""
    url, name = app.config["CELERY_BROKER_URL"], app.config["LABTRACK_TASK_QUEUE"]
    if url.startswith("redis"):
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


@pytest.fixture
def start_worker(app, tmp_path: Path) -> Iterator:
    """Start workers on demand; every one still running is stopped at the end of the test."""
    started: list[Worker] = []

    def start(**options) -> Worker:
        worker = Worker(app, tmp_path / f"worker-{len(started)}.log", **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def set_webhook(lab, clinic: str, url: str, secret: str | None) -> None:
    lab.sql(
        "UPDATE clinics SET webhook_url = :url, webhook_secret = :secret WHERE code = :code",
        url=url,
        secret=secret,
        code=clinic,
    )


def set_batch(db, din: str, **values) -> None:
    """Move a batch's projection (its expiry, its hand-off time) to stage a scenario, through the ORM
    so that times are stored as the application stores them on either database."""
    db.write(lambda session: session.execute(update(Batch).where(Batch.din == din).values(**values)))
