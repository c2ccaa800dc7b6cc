"""Fixtures shared by several test folders, defined once (registered by tests/conftest.py).

- ``sign_in``: a signed-in web session (tests/web, tests/faults, ...).
- ``worker_app`` and what it needs: the app as a real Celery worker serves it, on the real broker
  (the embedded SQLite one, or Redis when CELERY_BROKER_URL says so) and a task queue of the test's
  own, so runs sharing one Redis never take each other's tasks; the timings are shortened so that
  the sweep, the lease and the retries happen within seconds. tests/workers and tests/faults use it
  as their ``app``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from labtrack.services import outbox
from tests.helpers import PASSWORD
from tests.web.support import Browser, csrf_token
from tests.workers.support import Receiver, Worker


@pytest.fixture
def sign_in(app: Flask, lab):
    """``sign_in("tech")`` -> a Browser with that user's session."""

    def sign_in(username: str, password: str = PASSWORD, **client_kwargs: Any) -> Browser:
        client = app.test_client(**client_kwargs)
        page = client.get("/login")
        response = client.post(
            "/login", data={"username": username, "password": password, "csrf_token": csrf_token(page.text)}
        )
        assert response.status_code == 303, response.text
        return Browser(client, username)

    return sign_in


@pytest.fixture
def broker_url(tmp_path: Path) -> str:
    return os.environ.get("CELERY_BROKER_URL") or f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"


@pytest.fixture
def smtp_url() -> str | None:
    return None


@pytest.fixture
def worker_app(database_url: str, broker_url: str, smtp_url: str | None, tmp_path: Path) -> Iterator[Flask]:
    from tests.conftest import make_app

    application = make_app(
        database_url,
        tmp_path,
        CELERY_BROKER_URL=broker_url,
        SMTP_URL=smtp_url,
        LABTRACK_TASK_QUEUE=f"labtrack-test-{uuid.uuid4().hex[:12]}",
        LABTRACK_OUTBOX_SWEEP_SECONDS=1.0,
        LABTRACK_OUTBOX_LEASE_SECONDS=3.0,
        LABTRACK_WEBHOOK_RETRY_SECONDS=0.5,
        LABTRACK_STATISTICS_WAIT_SECONDS=60,
    )
    yield application
    outbox.drain_publisher(5)  # what the test's requests published, before its queue is dropped
    application.extensions["labtrack.db"].dispose()
    drop_queue(application)


def drop_queue(app: Flask) -> None:
    """Leave a shared Redis as it was: the test's queue and kombu's bindings for it go with the test."""
    url, name = app.config["CELERY_BROKER_URL"], app.config["LABTRACK_TASK_QUEUE"]
    if url.startswith("redis"):
        with contextlib.suppress(redis.RedisError), redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            client.delete(name, f"_kombu.binding.{name}", f"_kombu.binding_permanent.{name}")


@pytest.fixture
def start_worker(app: Flask, tmp_path: Path) -> Iterator:
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
