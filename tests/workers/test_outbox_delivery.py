"""The transactional outbox delivered by a real Celery worker to a real HTTP receiver (requirements §6)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from labtrack import jobs
from labtrack.models import Batch, OutboxMessage
from labtrack.services import notifications, outbox
from tests.workers.conftest import ON_REDIS, set_webhook
from tests.workers.support import SECRET, PrivateRedis, Receiver, wait_until


def outbox_rows(lab, topic: str | None = None) -> list:
    query = "SELECT id, topic, status, attempts, clinic_id FROM outbox"
    return lab.sql(query + (" WHERE topic = :topic ORDER BY id" if topic else " ORDER BY id"), topic=topic)


def all_delivered(lab) -> bool:
    rows = outbox_rows(lab)
    return bool(rows) and all(row.status == "delivered" for row in rows)


def test_deviation_reaches_qa_and_own_clinic_only_with_signed_webhook(lab, receiver, start_worker):
    with Receiver() as other_clinic:
        set_webhook(lab, "C1", receiver.url, SECRET)
        set_webhook(lab, "C2", other_clinic.url, SECRET)
        start_worker()
        din = lab.at_lab()
        lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "Bag label smudged"}))
        (row,) = outbox_rows(lab, "deviation.opened")
        assert receiver.wait_for([row.id], timeout=30)
        assert wait_until(lambda: all_delivered(lab), 10)
        assert other_clinic.requests == []  # a clinic never hears about another clinic's batch
    (request,) = receiver.requests
    assert request["signature_ok"]
    assert request["delivery"] == row.id
    assert request["topic"] == "deviation.opened"
    assert request["body"]["din"] == din
    assert request["body"]["clinic"] == "C1"
    assert request["body"]["data"]["kind"] == "manual"

    for username in ("qa", "qa2", "clinic", "clinic_b"):
        (note,) = lab.ok(lab.get(username, "/notifications"), 200)["items"]
        assert note["topic"] == "deviation.opened"
        assert note["din"] == din
        assert note["read"] is False
    for username in ("other", "admin"):
        assert lab.ok(lab.get(username, "/notifications"), 200)["items"] == []
    # the technician heard of the hand-off to them, not of the deviation
    tech_topics = [n["topic"] for n in lab.ok(lab.get("tech", "/notifications"), 200)["items"]]
    assert tech_topics == ["batch.handed_to_you"]


def test_notifications_are_read_only_by_their_owner(lab, start_worker):
    start_worker()
    din = lab.at_lab()
    lab.ok(lab.post("clinic", f"/batches/{din}/deviations", {"kind": "manual", "description": "Cooler lid cracked"}))
    assert wait_until(lambda: lab.ok(lab.get("clinic", "/notifications"), 200)["items"], 30)
    (note,) = lab.ok(lab.get("clinic", "/notifications", unread="true"), 200)["items"]
    assert lab.post("clinic_b", f"/notifications/{note['id']}/read").status_code == 404
    read = lab.ok(lab.post("clinic", f"/notifications/{note['id']}/read"), 200)
    assert read["read"] is True
    assert read["read_at"]
    assert lab.ok(lab.get("clinic", "/notifications", unread="true"), 200)["items"] == []
    assert len(lab.ok(lab.get("clinic", "/notifications"), 200)["items"]) == 1
    assert len(lab.ok(lab.get("clinic_b", "/notifications", unread="true"), 200)["items"]) == 1


def test_webhook_retried_with_backoff_and_every_attempt_logged(lab, start_worker):
    with Receiver(fail_first=2) as flaky:
        set_webhook(lab, "C1", flaky.url, SECRET)
        start_worker()
        din = lab.at_lab()
        lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "Retry me"}))
        (row,) = outbox_rows(lab, "deviation.opened")
        assert flaky.wait_for([row.id], timeout=30)
        assert wait_until(lambda: all_delivered(lab), 10)
    attempts = [r for r in flaky.requests if r["delivery"] == row.id]
    assert [r["attempt"] for r in attempts] == [1, 2, 3]
    assert all(r["signature_ok"] for r in attempts)
    assert len({repr(r["body"]) for r in attempts}) == 1  # the same bytes on every retry
    log = lab.sql("SELECT attempt, ok, status_code FROM outbox_deliveries WHERE outbox_id = :id ORDER BY id", id=row.id)
    assert [(r.attempt, bool(r.ok), r.status_code) for r in log] == [(1, False, 500), (2, False, 500), (3, True, 200)]
    (final,) = outbox_rows(lab, "deviation.opened")
    assert final.attempts == 2


def test_worker_killed_mid_delivery_a_new_worker_delivers_the_rest(lab, app, db, start_worker):
    total = 120
    with Receiver(delay=0.03, serial=True) as slow:
        set_webhook(lab, "C1", slow.url, SECRET)
        din = lab.batch()

        def write(session):
            batch = session.execute(select(Batch).where(Batch.din == din)).scalar_one()
            return [outbox.enqueue(session, "batch.expiring", batch, {"n": n}) for n in range(total)]

        with app.app_context():
            ids = [message.id for message in db.write(write)]
        first = start_worker(concurrency=1)
        assert wait_until(lambda: len(slow.accepted()) >= 20, 30)
        first.kill()
        delivered_by_first = len(slow.accepted())
        assert delivered_by_first < total, "the first worker finished before it could be killed"
        start_worker(concurrency=1)
        assert slow.wait_for(ids, timeout=60), f"undelivered: {sorted(set(ids) - slow.accepted())[:10]}"
        assert wait_until(lambda: all_delivered(lab), 15)
    assert all(r["signature_ok"] for r in slow.requests)
    # in-app notifications exactly once per row and clinic user, even where the webhook went twice
    counts = lab.sql("SELECT outbox_id, count(*) AS n FROM notifications GROUP BY outbox_id")
    assert len(counts) == total
    assert {row.n for row in counts} == {2}


@pytest.mark.skipif(not ON_REDIS, reason="the Redis pass (CELERY_BROKER_URL=redis://...) runs this")
class TestRedisOutage:
    @pytest.fixture
    def redis(self, tmp_path):
        server = PrivateRedis(tmp_path)
        server.start()
        yield server
        server.stop()

    @pytest.fixture
    def broker_url(self, redis) -> str:
        return redis.url

    def test_steps_answer_201_while_redis_is_down_and_every_notification_arrives_after(
        self, lab, redis, receiver, start_worker, caplog
    ):
        set_webhook(lab, "C1", receiver.url, SECRET)
        start_worker()
        before = lab.at_lab()
        # the hand-off's notification delivered first, so the outage begins with nothing in flight
        outbox.drain_publisher(5)
        assert wait_until(lambda: all_delivered(lab), 30)
        redis.stop()
        slowest = 0.0
        dins = []
        for mrn in ("MRN-2", "MRN-3"):
            started = time.monotonic()
            din = lab.batch(mrn=mrn)
            lab.ok(lab.harvest(din, patient_mrn=mrn))
            lab.ok(lab.handoff(din))
            lab.ok(lab.receive(din, temperature_c=31))  # a transport excursion: deviation.opened
            lab.ok(lab.post("tech", f"/batches/{din}/deviations", {"kind": "manual", "description": "Outage"}))
            slowest = max(slowest, time.monotonic() - started)
            dins.append(din)
        lab.ok(lab.post("tech", f"/batches/{before}/deviations", {"kind": "manual", "description": "Outage"}))
        assert slowest < 5, f"five steps took {slowest:.1f} s while Redis was down"
        rows = outbox_rows(lab)
        # the clinic's webhook hears what its route sends it; a hand-off goes in-app to its recipient only
        ids = [row.id for row in rows if notifications.route_of(row.topic).clinic]
        in_app_only = {row.id for row in rows} - set(ids)
        assert len(ids) >= 5
        assert {row.topic for row in rows if row.id in in_app_only} == {"batch.handed_to_you"}
        time.sleep(2)
        assert receiver.accepted().isdisjoint(ids)  # nothing could be delivered: no broker
        redis.start()
        assert receiver.wait_for(ids, timeout=60), f"undelivered: {sorted(set(ids) - receiver.accepted())}"
        assert wait_until(lambda: all_delivered(lab), 15)
        notified = {row.outbox_id for row in lab.sql("SELECT DISTINCT outbox_id FROM notifications")}
        assert in_app_only <= notified
        assert {r["body"]["din"] for r in receiver.requests} == {before, *dins}
        assert any("broker unavailable" in r.getMessage() for r in caplog.records)  # the outage was real


def test_rows_not_yet_due_or_leased_by_another_worker_are_left_alone(lab, app, db):
    """The claim takes only pending, due, unleased rows: what keeps concurrent sweepers apart."""
    din = lab.batch()

    def write(session):
        batch = session.execute(select(Batch).where(Batch.din == din)).scalar_one()
        messages = [outbox.enqueue(session, "batch.expiring", batch, {}) for _ in range(3)]
        session.flush()
        return [message.id for message in messages]

    later, earlier = "2999-01-01 00:00:00", "2000-01-01 00:00:00"
    not_due, leased, due = db.write(write)
    lab.sql("UPDATE outbox SET next_attempt_at = :t WHERE id = :id", t=later, id=not_due)
    lab.sql("UPDATE outbox SET locked_until = :t, locked_by = 'elsewhere:1' WHERE id = :id", t=later, id=leased)
    settings = outbox.Settings.of(app.config)

    def statuses() -> dict[int, str]:
        session = db.reader()
        try:
            return dict(session.execute(select(OutboxMessage.id, OutboxMessage.status)).all())
        finally:
            session.close()

    assert jobs.dispatch(db, settings) == 1
    assert statuses() == {not_due: "pending", leased: "pending", due: "delivered"}
    lab.sql("UPDATE outbox SET locked_until = :t WHERE id = :id", t=earlier, id=leased)  # that worker died
    assert jobs.dispatch(db, settings) == 1
    assert statuses() == {not_due: "pending", leased: "delivered", due: "delivered"}
    assert jobs.dispatch(db, settings) == 0
