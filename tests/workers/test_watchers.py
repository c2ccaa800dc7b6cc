"""Watchers: expiry (R-SEQ-3) and custody gaps (R-CUS-5), idempotent and safe when two run at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from labtrack import jobs
from labtrack.audit import chains, keys
from labtrack.extensions import TASK_CUSTODY_WATCH, TASK_EXPIRY_WATCH
from labtrack.services import watchers
from tests.workers.conftest import set_batch
from tests.workers.support import wait_until

WARNING = timedelta(minutes=120)
GAP = timedelta(minutes=240)
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


def expires_at(lab, din: str) -> datetime:
    return datetime.fromisoformat(lab.ok(lab.get("qa", f"/batches/{din}"), 200)["expires_at"])


def events_of(lab, din: str, type: str) -> list[dict]:
    return [e for e in lab.ok(lab.get("qa", f"/batches/{din}/events"), 200) if e["type"] == type]


def topics(lab, din: str) -> list[str]:
    rows = lab.sql(
        "SELECT o.topic FROM outbox o JOIN batches b ON b.id = o.batch_id"
        " WHERE b.din = :din AND o.topic <> 'batch.handed_to_you' ORDER BY o.id",  # its recipient's notice aside
        din=din,
    )
    return [row.topic for row in rows]


def at_lab(lab, mrn: str) -> str:
    din = lab.batch(mrn=mrn)
    lab.ok(lab.harvest(din, patient_mrn=mrn))
    lab.ok(lab.handoff(din))
    lab.ok(lab.receive(din))
    return din


def at_once(runs: int, work) -> list:
    """Start ``runs`` calls of ``work`` together, as two beats firing at the same moment would."""
    barrier = threading.Barrier(runs)
    results: list = [None] * runs
    errors: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def chains_verify(app, db):
    with app.app_context():
        session = db.reader()
        try:
            return chains.verify(session, public_key=keys.trusted_public_key(app.config))
        finally:
            session.close()


def test_r_seq_3_clinic_warned_once_before_expiry_then_batch_expired_once(lab, db, app):
    din = lab.at_lab()
    expiry = expires_at(lab, din)
    assert jobs.expiry_watch(db, warning=WARNING, now=expiry - WARNING - timedelta(minutes=1)).warned == []
    warned = jobs.expiry_watch(db, warning=WARNING, now=expiry - timedelta(minutes=90))
    assert warned.warned == [din]
    assert warned.expired == []
    again = jobs.expiry_watch(db, warning=WARNING, now=expiry - timedelta(minutes=30))
    assert again.warned == []
    assert topics(lab, din) == ["batch.expiring"]

    expired = jobs.expiry_watch(db, warning=WARNING, now=expiry + timedelta(seconds=1))
    assert expired.expired == [din]
    assert jobs.expiry_watch(db, warning=WARNING, now=expiry + timedelta(minutes=5)).expired == []
    batch = lab.ok(lab.get("clinic", f"/batches/{din}"), 200)
    assert batch["status"] == "expired"
    (event,) = events_of(lab, din, "expired")
    assert event["actor"]["username"] == watchers.SYSTEM_USERNAME
    assert datetime.fromisoformat(event["occurred_at"]) == expiry
    assert event["data"]["status_before"] == "received"
    assert topics(lab, din) == ["batch.expiring", "batch.expired"]
    readiness = lab.ok(lab.get("clinic", f"/batches/{din}/readiness"), 200)
    assert readiness["ready"] is False
    assert chains_verify(app, db).ok


def test_r_seq_3_administered_and_rejected_batches_never_expire(lab, db):
    din = lab.delivered("bone_marrow")
    lab.ok(lab.administration(din))
    expiry = expires_at(lab, din)
    assert jobs.expiry_watch(db, warning=WARNING, now=expiry + timedelta(hours=1)).expired == []
    assert lab.ok(lab.get("clinic", f"/batches/{din}"), 200)["status"] == "administered"


def test_r_seq_3_two_expiry_watches_at_once_expire_and_warn_each_batch_once(lab, db, app):
    dins = [at_lab(lab, f"MRN-{n}") for n in range(3)]
    latest = max(expires_at(lab, din) for din in dins)
    soon = [at_lab(lab, f"MRN-{n}") for n in range(3, 5)]
    now = latest + timedelta(seconds=1)
    for din in soon:  # these expire within the warning window of ``now``
        set_batch(db, din, expires_at=now + timedelta(minutes=30))
    outcomes = at_once(2, lambda: jobs.expiry_watch(db, warning=WARNING, now=now))
    assert sorted(din for outcome in outcomes for din in outcome.expired) == sorted(dins)
    assert sorted(din for outcome in outcomes for din in outcome.warned) == sorted(soon)
    for din in dins:
        assert len(events_of(lab, din, "expired")) == 1
        assert topics(lab, din) == ["batch.expired"]
    for din in soon:
        assert topics(lab, din) == ["batch.expiring"]
    assert chains_verify(app, db).ok


def test_r_cus_5_unreceived_handoff_opens_one_custody_overdue_deviation_for_qa(lab, db, app):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    handed = datetime.fromisoformat(events_of(lab, din, "handoff")[0]["occurred_at"])
    assert jobs.custody_watch(db, gap=GAP, now=handed + GAP - timedelta(minutes=1)).overdue == []
    assert jobs.custody_watch(db, gap=GAP, now=handed + GAP + timedelta(minutes=1)).overdue == [din]
    assert jobs.custody_watch(db, gap=GAP, now=handed + GAP + timedelta(minutes=6)).overdue == []
    (deviation,) = lab.ok(lab.get("qa", "/deviations", din=din), 200)["items"]
    assert deviation["kind"] == "custody_overdue"
    assert deviation["status"] == "open"
    assert "not received after 241 minutes" in deviation["description"]
    assert lab.ok(lab.get("qa", f"/batches/{din}"), 200)["held"] is True
    assert topics(lab, din) == ["deviation.opened"]  # routed to QA (and the batch's clinic)
    assert chains_verify(app, db).ok


def test_r_cus_5_each_overdue_handoff_counts_separately(lab, db):
    din = lab.at_lab()
    lab.ok(lab.handoff(din, by="tech", to="tech2", seal="SEAL-2"))
    handed = datetime.fromisoformat(events_of(lab, din, "handoff")[-1]["occurred_at"])
    assert jobs.custody_watch(db, gap=GAP, now=handed + GAP + timedelta(minutes=1)).overdue == [din]
    lab.ok(lab.receive(din, by="tech2", seal="SEAL-2"))
    lab.ok(lab.handoff(din, by="tech2", to="tech", seal="SEAL-3"))
    handed = datetime.fromisoformat(events_of(lab, din, "handoff")[-1]["occurred_at"])
    assert jobs.custody_watch(db, gap=GAP, now=handed + GAP + timedelta(minutes=1)).overdue == [din]
    kinds = [d["kind"] for d in lab.ok(lab.get("qa", "/deviations", din=din), 200)["items"]]
    assert kinds == ["custody_overdue", "custody_overdue"]


def test_r_cus_5_two_custody_watches_at_once_open_one_deviation(lab, db, app):
    dins = []
    for mrn in ("MRN-2", "MRN-3", "MRN-4"):
        din = lab.batch(mrn=mrn)
        lab.ok(lab.harvest(din, patient_mrn=mrn))
        lab.ok(lab.handoff(din))
        dins.append(din)
    now = datetime.fromisoformat(events_of(lab, dins[-1], "handoff")[0]["occurred_at"]) + GAP + timedelta(minutes=1)
    outcomes = at_once(2, lambda: jobs.custody_watch(db, gap=GAP, now=now))
    assert sorted(din for outcome in outcomes for din in outcome.overdue) == sorted(dins)
    for din in dins:
        assert [d["kind"] for d in lab.ok(lab.get("qa", "/deviations", din=din), 200)["items"]] == ["custody_overdue"]
    assert chains_verify(app, db).ok


def test_r_cus_5_r_seq_3_two_beat_triggered_runs_in_a_real_worker_have_one_effect(lab, app, db, start_worker):
    """Two task messages at once, two worker processes taking one each: one deviation, one expiry."""
    overdue = lab.batch()
    lab.ok(lab.harvest(overdue))
    lab.ok(lab.handoff(overdue))
    set_batch(db, overdue, transfer_at=LONG_AGO)
    stale = at_lab(lab, "MRN-2")
    set_batch(db, stale, expires_at=LONG_AGO)
    celery = app.extensions["celery"]
    for name in (TASK_CUSTODY_WATCH, TASK_CUSTODY_WATCH, TASK_EXPIRY_WATCH, TASK_EXPIRY_WATCH):
        celery.send_task(name)
    start_worker(concurrency=2, beat=False)
    assert wait_until(lambda: lab.ok(lab.get("qa", "/deviations", din=overdue), 200)["items"], 30)
    assert wait_until(lambda: events_of(lab, stale, "expired"), 30)
    assert wait_until(lambda: "batch.expired" in topics(lab, stale), 10)
    wait_until(lambda: False, 2)  # let any second run finish
    assert [d["kind"] for d in lab.ok(lab.get("qa", "/deviations", din=overdue), 200)["items"]] == ["custody_overdue"]
    assert len(events_of(lab, stale, "expired")) == 1
    assert topics(lab, stale).count("batch.expired") == 1


def test_r_seq_3_a_batch_that_expires_in_transit_stays_expired_when_received(lab, db):
    din = lab.batch()
    lab.ok(lab.harvest(din))
    lab.ok(lab.handoff(din))
    assert jobs.expiry_watch(db, warning=WARNING, now=expires_at(lab, din) + timedelta(seconds=1)).expired == [din]
    lab.ok(lab.receive(din))  # the container still changes hands, and that is recorded
    batch = lab.ok(lab.get("tech", f"/batches/{din}"), 200)
    assert batch["status"] == "expired"
    assert batch["custodian"]["username"] == "tech"


def test_the_system_username_is_reserved_for_automatic_events(lab):
    body = {"username": "system", "full_name": "Not Me", "role": "admin", "password": "long-enough-password"}
    assert lab.post("admin", "/users", body).status_code == 409
