"""Racing writers on real PostgreSQL connections (requirements §1: per-batch chains, no global lock).

Each thread has its own test client; tokens are fetched before the threads start, and a
barrier releases them together so the requests really overlap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.helpers import LAB_STEPS

pytestmark = pytest.mark.postgres

Call = Callable[[FlaskClient], Any]


def race(app, calls: list[Call]) -> list[tuple[int, dict]]:
    """Run every call at once, one client per thread; answer (status, body) in call order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Call) -> tuple[int, dict]:
        client = app.test_client()
        barrier.wait()
        response = call(client)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def post(lab, username: str, path: str, body: dict, **headers: str) -> Call:
    auth = lab.headers(username) | headers  # the token is fetched now, before any thread starts
    return lambda client: client.post(f"/api/v1{path}", json=body, headers=auth)


def assert_gapless_and_verified(lab, din: str, length: int) -> list[dict]:
    events = lab.ok(lab.get("qa", f"/batches/{din}/events"), 200)
    assert [e["seq"] for e in events] == list(range(1, length + 1))
    for previous, event in pairwise(events):
        assert event["prev_hash"] == previous["hash"]
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert report["ok"] is True, report["failures"]
    return events


def test_twenty_writers_racing_on_one_step_one_wins_the_rest_get_409(app, lab):
    din = lab.at_lab()
    body = {"step": "digestion", "scanned_din": din} | LAB_STEPS["digestion"]
    calls = [post(lab, ("tech", "tech2")[i % 2], f"/batches/{din}/steps", body) for i in range(20)]
    results = race(app, calls)
    assert Counter(status for status, _ in results) == {201: 1, 409: 19}
    assert {body["code"] for status, body in results if status == 409} == {"invalid_transition"}
    events = assert_gapless_and_verified(lab, din, 5)
    assert [e["type"] for e in events].count("digestion") == 1


def test_twenty_different_writes_on_one_batch_all_land_on_a_gapless_chain(app, lab):
    din = lab.at_lab()
    calls = [
        post(lab, ("tech", "tech2", "qa", "qa2")[i % 4], f"/batches/{din}/deviations", {"description": f"note {i}"})
        for i in range(20)
    ]
    results = race(app, calls)
    assert [status for status, _ in results] == [201] * 20, [b for s, b in results if s != 201]
    assert len({body["id"] for _, body in results}) == 20
    events = assert_gapless_and_verified(lab, din, 4 + 20)
    opened = [e["data"]["description"] for e in events if e["type"] == "deviation_opened"]
    assert sorted(opened) == sorted(f"note {i}" for i in range(20))


def test_fifty_parallel_registrations_get_distinct_consecutive_dins(app, lab):
    patients = [lab.patient(f"MRN-{n}", by=username)["id"] for n, username in enumerate(("clinic", "other"))]
    calls = [
        post(lab, ("clinic", "other")[i % 2], "/batches", {"patient_id": patients[i % 2], "tissue_source": "adipose"})
        for i in range(50)
    ]
    results = race(app, calls)
    assert [status for status, _ in results] == [201] * 50, [b for s, b in results if s != 201]
    dins = [body["din"] for _, body in results]
    assert len(set(dins)) == 50
    assert sorted(int(din[-6:]) for din in dins) == list(range(1, 51))
    assert {din[:7] for din in dins} == {dins[0][:7]}
    assert lab.sql("SELECT sum(last_sequence) FROM din_counters")[0][0] == 50
    report = lab.ok(lab.get("qa", "/audit/verify"), 200)
    assert (report["ok"], report["batches_checked"]) == (True, 50)


def test_ten_concurrent_retries_with_one_idempotency_key_register_one_batch(app, lab):
    patient = lab.patient()
    body = {"patient_id": patient["id"], "tissue_source": "bone_marrow"}
    results = race(app, [post(lab, "clinic", "/batches", body, **{"Idempotency-Key": "retry-storm"})] * 10)
    assert [status for status, _ in results] == [201] * 10, results
    assert len({body["din"] for _, body in results}) == 1
    assert len(lab.ok(lab.get("tech", "/batches"), 200)["items"]) == 1
    assert lab.sql("SELECT sum(last_sequence) FROM din_counters")[0][0] == 1


def test_forty_parallel_admin_changes_land_on_a_gapless_admin_chain(app, lab):
    start = lab.sql("SELECT max(seq) FROM admin_events")[0][0]
    calls = [
        post(
            lab,
            "admin",
            "/reagent-lots",
            {
                "kind": "collagenase",
                "name": "Collagenase",
                "lot_number": f"CG-P{i}",
                "expires_on": "2099-01-01",
                "status": "released",
            },
        )
        for i in range(40)
    ]
    results = race(app, calls)
    assert [status for status, _ in results] == [201] * 40, [b for s, b in results if s != 201]
    seqs = [row[0] for row in lab.sql("SELECT seq FROM admin_events ORDER BY seq")]
    assert seqs == list(range(1, start + 41))
    report = lab.ok(lab.get("admin", "/audit/verify"), 200)
    assert report["ok"] is True, report["failures"]
