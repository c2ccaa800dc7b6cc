"""Worker tests run a real Celery worker against the real broker: their ``app`` is ``worker_app``
(tests/fixtures.py), with a task queue of the test's own and timings shortened to seconds."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import update

from labtrack.models import Batch

ON_REDIS = os.environ.get("CELERY_BROKER_URL", "").startswith("redis")


@pytest.fixture
def app(worker_app):
    """The app a real worker serves (tests/fixtures.py)."""
    return worker_app


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
