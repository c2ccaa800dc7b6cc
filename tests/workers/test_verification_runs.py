"""R-SCL-2: a full verification is a background run (202 and a status URL), with stored progress, that a
worker takes up again where it stopped; no HTTP request runs one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from labtrack import jobs
from labtrack.audit import chains, keys, runs
from labtrack.clock import utcnow
from tests.api.test_audit_trail import triggers_bypassed
from tests.workers.support import wait_until


def start(lab) -> dict:
    response = lab.post("qa", "/audit/verifications")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/audit/verifications/{body['id']}")
    return body


def test_r_scl_2_a_full_verification_runs_on_a_worker_and_names_the_broken_chain(lab, start_worker):
    victim, bystander = lab.at_lab(), lab.batch(mrn="MRN-2")
    with triggers_bypassed(lab) as connection:
        connection.execute(text("UPDATE batch_events SET data = '{\"forged\": true}' WHERE seq = 2 AND batch_id = 1"))
    run = start(lab)
    assert run["status"] == "queued"
    assert start(lab)["id"] == run["id"]  # one full run at a time: the same one is answered
    start_worker(beat=False)
    done = wait_until(
        lambda: (r := lab.ok(lab.get("qa", f"/audit/verifications/{run['id']}"), 200))["status"] == "done" and r, 60
    )
    assert done, lab.get("qa", f"/audit/verifications/{run['id']}").get_json()
    events = lab.sql("SELECT count(*) FROM batch_events")[0][0]
    assert done["progress"] == {"batches_done": 2, "batches_total": 2, "events_done": events, "percent": 100.0}
    assert done["result"]["mode"] == "full"
    assert [(f["din"], f["seq"]) for f in done["result"]["failures"]] == [(victim, 2)]
    assert bystander not in str(done["result"])
    assert lab.get("tech", f"/audit/verifications/{run['id']}").status_code == 403
    assert lab.get("qa", "/audit/verifications/999").status_code == 404


def test_r_scl_2_a_run_whose_worker_died_is_resumed_where_it_stopped(app, lab, db, monkeypatch):
    monkeypatch.setattr(runs, "CHUNK_BATCHES", 2)
    dins = [lab.batch(mrn=f"MRN-{i}") for i in range(5)]
    total_events = lab.sql("SELECT count(*) FROM batch_events")[0][0]
    run_id = start(lab)["id"]  # no worker: it stays queued
    with app.app_context():
        assert jobs.stalled_verifications(db) == [run_id]
        assert db.write(lambda s: runs.claim(s, run_id, utcnow()))
        with chains.Chunked(db.engine, keys.trusted_public_key(app.config)) as verifier:
            assert db.write(lambda s: runs.record_chunk(s, run_id, verifier))  # one chunk, then the worker dies
        assert jobs.stalled_verifications(db) == []  # its lease still runs
        progress = lab.ok(lab.get("qa", f"/audit/verifications/{run_id}"), 200)
        assert (progress["status"], progress["progress"]["batches_done"], progress["progress"]["percent"]) == (
            "running",
            2,
            40.0,
        )
        lapsed = utcnow() - runs.LEASE - timedelta(seconds=1)
        lab.sql("UPDATE audit_verifications SET heartbeat_at = :at", at=lapsed)
        assert jobs.stalled_verifications(db) == [run_id]
        assert jobs.verify_full(db, run_id, keys.trusted_public_key(app.config)) == "done"
        assert jobs.verify_full(db, run_id, keys.trusted_public_key(app.config)) == "taken"  # done: nobody runs it
    done = lab.ok(lab.get("qa", f"/audit/verifications/{run_id}"), 200)
    assert done["progress"]["batches_done"] == 5  # not 7: the first chunk was not read again
    assert done["result"]["ok"] is True
    assert done["result"]["batches_checked"] == len(dins)
    assert done["result"]["events_checked"] == total_events + lab.sql("SELECT count(*) FROM admin_events")[0][0]


@pytest.mark.parametrize("query", [{}, {"din": "A999926000001"}])
def test_r_scl_2_get_verify_says_how_it_verified(lab, query):
    lab.batch()
    report = lab.ok(lab.get("qa", "/audit/verify", **query), 200)
    assert report["mode"] == ("batch" if query else "incremental")
    assert report["ok"] is True
