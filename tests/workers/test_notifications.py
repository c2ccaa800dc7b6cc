"""Who hears about what (requirements §6): every topic reaches only the users and the clinic it concerns.

The dispatcher runs in this process here (its worker path is covered by test_outbox_delivery),
against the real database, a real HTTP receiver and a real SMTP conversation.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from labtrack import jobs
from labtrack.models import Batch
from labtrack.services import outbox
from tests.workers.conftest import set_webhook
from tests.workers.support import SECRET, SmtpSink

CLINIC_C1 = {"clinic", "clinic_b"}
QA = {"qa", "qa2"}


def notify(app, db, din: str, topic: str, payload: dict) -> int:
    def write(session):
        batch = session.execute(select(Batch).where(Batch.din == din)).scalar_one()
        message = outbox.enqueue(session, topic, batch, payload)
        session.flush()
        return message.id

    message_id = db.write(write)
    assert jobs.dispatch(db, outbox.Settings.of(app.config), [message_id]) == 1
    return message_id


def recipients(lab, message_id: int) -> set[str]:
    rows = lab.sql(
        "SELECT u.username FROM notifications n JOIN users u ON u.id = n.user_id WHERE n.outbox_id = :id",
        id=message_id,
    )
    return {row.username for row in rows}


@pytest.mark.parametrize(
    ("topic", "users", "webhook"),
    [
        ("batch.released", CLINIC_C1, True),
        ("batch.rejected", CLINIC_C1, True),
        ("batch.dispatched", CLINIC_C1, True),
        ("batch.expiring", CLINIC_C1, True),
        ("batch.expired", CLINIC_C1 | QA, True),
        ("deviation.opened", CLINIC_C1 | QA, True),
        ("sterility.positive", CLINIC_C1 | QA, True),
        ("identity.mismatch", QA, False),
        ("some.future.topic", QA, False),
    ],
)
def test_r_acc_1_each_topic_reaches_only_whom_it_concerns(lab, app, db, receiver, topic, users, webhook):
    set_webhook(lab, "C1", receiver.url, SECRET)
    set_webhook(lab, "C2", receiver.url + "/c2", SECRET)
    din = lab.batch()
    message_id = notify(app, db, din, topic, {"status": "released"})
    assert recipients(lab, message_id) == users  # never "other" (clinic C2), tech or admin
    paths = [r["path"] for r in receiver.requests]
    assert paths == (["/hooks/labtrack"] if webhook else [])
    assert all(r["signature_ok"] for r in receiver.requests)


def test_deactivated_users_are_not_notified(lab, app, db):
    lab.ok(lab.patch("admin", "/users/qa2", {"active": False}), 200)
    message_id = notify(app, db, lab.batch(), "deviation.opened", {"kind": "manual"})
    assert recipients(lab, message_id) == CLINIC_C1 | {"qa"}


def test_a_webhook_without_a_secret_is_sent_unsigned(lab, app, db, receiver):
    set_webhook(lab, "C1", receiver.url, None)
    notify(app, db, lab.batch(), "batch.released", {"conditional_release": True})
    (request,) = receiver.requests
    assert request["signature_ok"] is False
    assert "conditional release" in request["body"]["message"]


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def smtp_url(smtp) -> str:
    return smtp.url


def test_email_goes_to_the_notified_users_with_an_address(lab, app, db, smtp):
    lab.ok(lab.patch("admin", "/users/qa", {"email": "qa@lab.example"}), 200)
    lab.ok(lab.patch("admin", "/users/clinic", {"email": "clara@clinic.example"}), 200)
    lab.ok(lab.patch("admin", "/users/other", {"email": "olga@elsewhere.example"}), 200)
    message_id = notify(app, db, lab.batch(), "sterility.positive", {"status": "released"})
    (message,) = smtp.messages
    assert sorted(message["to"]) == ["clara@clinic.example", "qa@lab.example"]
    assert message["from"] == "labtrack@lab.example"
    assert "URGENT: sterility culture positive" in message["data"]
    (logged,) = lab.sql("SELECT channel, ok FROM outbox_deliveries WHERE outbox_id = :id", id=message_id)
    assert logged.channel == "email"
    assert logged.ok
    assert lab.sql("SELECT status FROM outbox WHERE id = :id", id=message_id)[0].status == "delivered"


def test_two_sweepers_at_once_deliver_each_row_once(lab, app, db, receiver):
    """Claims are disjoint (SKIP LOCKED on PostgreSQL, the serial write lock on SQLite) and leased."""
    set_webhook(lab, "C1", receiver.url, SECRET)
    din = lab.batch()

    def write(session):
        batch = session.execute(select(Batch).where(Batch.din == din)).scalar_one()
        messages = [outbox.enqueue(session, "batch.expiring", batch, {"n": n}) for n in range(300)]
        session.flush()
        return [message.id for message in messages]

    ids = db.write(write)
    settings = outbox.Settings.of(app.config)
    barrier = threading.Barrier(2)

    def sweeper(name: str) -> int:
        barrier.wait()
        return jobs.sweep(db, dataclasses.replace(settings, worker=name))

    with ThreadPoolExecutor(2) as pool:
        handled = list(pool.map(sweeper, ["sweeper-a", "sweeper-b"]))
    assert sum(handled) == len(ids)
    assert sorted(r["delivery"] for r in receiver.requests) == ids  # each webhook exactly once
    counts = lab.sql("SELECT count(*) AS n, count(DISTINCT outbox_id) AS rows FROM notifications")
    assert (counts[0].n, counts[0].rows) == (2 * len(ids), len(ids))
    workers = lab.sql("SELECT DISTINCT worker FROM outbox_deliveries")
    assert {row.worker for row in workers} <= {"sweeper-a", "sweeper-b"}


def test_a_technician_hears_when_a_batch_is_handed_to_them_and_only_they_do(lab, app, db, receiver):
    set_webhook(lab, "C1", receiver.url, SECRET)
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din, to="tech"))
    (message_id, payload) = lab.sql("SELECT id, payload FROM outbox WHERE topic = 'batch.handed_to_you'")[0]
    assert jobs.dispatch(db, outbox.Settings.of(app.config), [message_id]) == 1
    assert recipients(lab, message_id) == {"tech"}
    assert receiver.requests == []  # the lab's own work list: no clinic webhook
    (text,) = [row.message for row in lab.sql("SELECT message FROM notifications WHERE outbox_id = :id", id=message_id)]
    assert text.startswith("Batch ")
    assert "handed to you by Clara Clinic" in text
    assert "SEAL-1" not in text
    assert "SEAL-1" not in str(payload)
